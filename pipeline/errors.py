"""The pipeline's exceptions: one base, each message saying what to do about it."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose; the message is for the user."""


class FileRefused(PipelineError):
    """A source file is quarantined as a whole: `reason` is a code, `detail` says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
