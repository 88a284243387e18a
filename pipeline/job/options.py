"""What the command line decides, checked before Spark starts."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from pipeline.contract import is_utf8_name
from pipeline.contract import printable_name
from pipeline.errors import JobError
from pipeline.job.routes import DRIVER_BATCH_MAX_BYTES

# Rotate the checkpoint past this many files in its log. Spark rewrites the whole log every
# 100th batch and the driver keeps every path in memory: at 10,000 files that is about
# 1.5 MB, and a new generation lists at most about a tenth of it again.
# See docs/operations.md for the soak figures behind it.
ROTATE_FILES = 10_000


@dataclass(frozen=True)
class JobOptions:
    """What the command line decides."""

    source: str
    checkpoint: str
    max_files_per_trigger: int = 1
    once: bool = False
    trigger_interval_s: float = 0.0
    verbose: bool = False
    prometheus: bool = False
    catch_up_files: int = 0  # 0: off
    driver_batch_max_bytes: int = DRIVER_BATCH_MAX_BYTES  # 0: every batch through Spark
    clean_source: str = "off"  # Spark's cleanSource: off, archive or delete
    archive_dir: str | None = None
    checkpoint_rotate_files: int = ROTATE_FILES  # 0: never
    metrics_port: int = 0  # 0: off
    metrics_host: str = "127.0.0.1"


def local_path(uri: str) -> Path | None:
    """The local path of a plain path or file: URI; None for hdfs://, s3a:// and the like."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri).expanduser().resolve()
    return None


def _probe_writable(folder: Path, what: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise JobError(f"{what} folder {folder} is not writable: {e.strerror}") from None


def _file_system(uri: str) -> tuple[str, str]:
    """(scheme, authority) of a location: Spark moves archived files only within one."""
    parsed = urlparse(uri)
    return (parsed.scheme or "file", parsed.netloc)


def check_paths(options: JobOptions) -> JobOptions:
    """Fail early and clearly on a missing source, an unwritable checkpoint or archive (local
    paths), or an archive Spark would refuse when the query starts."""
    for flag, location in (("--source", options.source), ("--checkpoint", options.checkpoint),
                           ("--archive-dir", options.archive_dir or "")):
        if not is_utf8_name(location):
            # The JVM cannot spell it: Spark would list nothing in it, or fail to write there.
            raise JobError(f"{flag} {printable_name(location)} is not UTF-8: rename the"
                           " folder or choose another")
    source = local_path(options.source)
    if source is not None and not source.is_dir():
        raise JobError(f"source folder {source} does not exist: start the generator"
                       " (python data_generator.py) or create it")
    checkpoint = local_path(options.checkpoint)
    if checkpoint is not None:
        _probe_writable(checkpoint, "checkpoint")
    archive = options.archive_dir
    if options.clean_source == "archive":
        if not archive:
            raise JobError("--clean-source archive needs --archive-dir")
        archive_path = local_path(archive)
        if _file_system(archive) != _file_system(options.source):
            raise JobError(f"archive folder {archive} must be on the file system of the"
                           f" source {options.source}: Spark only moves files within one")
        if archive_path is not None and source is not None \
                and archive_path.is_relative_to(source):
            raise JobError(f"archive folder {archive_path} must be outside the source folder")
        if archive_path is not None:
            # Spark only logs a failed move and leaves the file in the source folder.
            _probe_writable(archive_path, "archive")
        archive = str(archive_path) if archive_path else archive
    # Spark wants absolute locations; keep URIs as given.
    return replace(options, source=str(source) if source else options.source,
                   checkpoint=str(checkpoint) if checkpoint else options.checkpoint,
                   archive_dir=archive)
