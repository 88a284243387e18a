"""The pipeline's exceptions: one base, each message saying what to do about it.

The entry points catch PipelineError, print its message and exit 2 (a setting, the database
or the driver cannot be used) or 1 (the stream stopped); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose; the message is for the user."""


class ConfigError(PipelineError):
    """A setting is missing or wrong; the message says which and what to do."""


class JobError(PipelineError):
    """The job cannot start or run; the message says what to fix."""


class StopRequested(PipelineError):
    """Raised inside a batch that began after a stop was asked for: it is not committed."""


class FileRefused(PipelineError):
    """A source file is quarantined as a whole: `reason` is a code, `detail` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SinkError(PipelineError):
    """The database cannot take the batch; the message says why and what to check."""


class DatabaseUnreachable(SinkError):
    """The server did not answer; worth retrying after a pause."""


class BatchRejected(SinkError):
    """The server refused the batch's data (a data error, a statement too large): no retry
    can cure it, but writing the batch's files one by one isolates the file that causes it."""


class SinkBusy(PipelineError):
    """The sink is committing a batch; a question that need not wait is asked again later."""


class TablesUnreadable(PipelineError):
    """A reporting command could not read the pipeline tables; the message says why."""


class CheckpointDamaged(PipelineError):
    """A file of Spark's checkpoint cannot be read (empty, cut short, not what Spark wrote):
    what a power cut can leave, since Spark renames its files without an fsync."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"checkpoint file {path} {problem}")
        self.path = path
        self.problem = problem
