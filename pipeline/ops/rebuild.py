"""Replay event files into the database exactly once: the way back after the database was
lost, from the archive `--clean-source archive` keeps (or any folder of event files).

Usage:
    python -m pipeline.ops.rebuild [--archive DIR]... [--from DIR]... [--files-per-batch N]

Files are loaded oldest first, as the stream loaded them, through the job's own checks and
commit protocol: each batch is one transaction with its `ingest_files` rows and its ledger
row. Killed at any point, the same command goes on where it stopped; files loaded before
(by the job or an earlier rebuild) are skipped, never doubled.

--archive names a folder written by Spark's cleanSource, which keeps each file under its
original absolute path (DIR/home/me/streaming_data/events_1.csv): those files are recorded
under the names they were first loaded with, so a rebuilt `ingest_files` matches the first
load and the stream, if it sees a file again, skips it. Spark archives a batch's files when
it plans the next batch, so the newest files may still be in the source folder: give it
with --from too. --from takes any folder of event files (searched recursively), recorded
under their own paths.

Both take local folders or Hadoop URIs (s3a://bucket/archive): files there are listed and
read through Hadoop's FileSystem in Spark tasks, with the connector and settings given as
for reconcile (PYSPARK_SUBMIT_ARGS or spark-defaults.conf).

Exit code 0 when every file is loaded or quarantined, 1 when the database refused to go on,
2 on a usage or configuration error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from fnmatch import fnmatch
from pathlib import Path

from pyspark.sql import SparkSession
from tqdm import tqdm

from pipeline.cli import tool_parser
from pipeline.config import load_settings
from pipeline.contract import SOURCE_GLOB
from pipeline.contract import FilePayload
from pipeline.contract import is_utf8_name
from pipeline.errors import JobError
from pipeline.errors import PipelineError
from pipeline.errors import SinkError
from pipeline.job.batch import BatchWriter
from pipeline.job.options import local_path
from pipeline.job.routes import DRIVER_BATCH_MAX_BYTES
from pipeline.job.session import build_spark_session
from pipeline.job.session import stop_spark_session
from pipeline.logs import configure_logging
from pipeline.read.checkpoint import SourceFile
from pipeline.read.spark_source import list_event_files
from pipeline.write.sink import MySQLSink

log = logging.getLogger(__name__)

FILES_PER_BATCH = 100


@dataclass(frozen=True)
class Replay:
    """A file to replay, with its size (which batch it goes into). `copied`: it sits in an
    archive that dated it by the copy (S3), so its time says when it was archived."""

    file: SourceFile
    size: int
    copied: bool = False


def replay_files(folder: Path, archive: bool) -> list[Replay]:
    """The event files under a local `folder`; from an archive, recorded under their first
    names."""
    found = []
    for directory, _dirs, names in os.walk(folder):
        for name in names:
            # A name that is not UTF-8 is no file Spark lists: the job records it as
            # quarantined (bad_file_name) from the source folder when it starts.
            if not fnmatch(name, SOURCE_GLOB) or not is_utf8_name(name):
                continue
            path = Path(directory) / name
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            original = "file:/" + str(path.relative_to(folder)) if archive else None
            found.append(Replay(SourceFile(uri=path.as_uri(),
                                           modified_at=_time(stat.st_mtime_ns // 1_000_000),
                                           recorded_as=original), stat.st_size))
    return found


def replay_remote_files(spark: SparkSession, folder: str, archive: bool) -> list[Replay]:
    """The same for a folder on hdfs://, s3a:// and the like."""
    return [Replay(SourceFile(uri=f.uri, modified_at=_time(f.modified_ms),
                              recorded_as=f.first_uri), f.size, copied=archive)
            for f in list_event_files(spark, folder, archive)]


def _time(modified_ms: int) -> datetime:
    # Spark and the ledger know modification times in whole milliseconds.
    return datetime.fromtimestamp(modified_ms / 1000, tz=UTC)


def oldest_first(files: list[Replay]) -> list[Replay]:
    """The order the stream took files in (so the same copy of a repeated event wins); one
    name given twice is loaded once.

    By modification time, as the stream lists them; but files of an archive that dated
    them by the copy come first, in the order they were archived: every one of them was
    loaded before any file still in the source. S3 dates objects to the second: objects
    archived within one second go in name order.
    """
    def order(r: Replay) -> tuple:
        return (not r.copied, r.file.modified_at, r.file.name)

    unique = {r.file.name: r for r in sorted(files, key=order, reverse=True)}
    return sorted(unique.values(), key=order)


def batches_of(files: list[Replay], files_per_batch: int, max_bytes: int
               ) -> Iterator[list[SourceFile]]:
    """Consecutive groups of at most `files_per_batch` files and about `max_bytes` bytes
    (a bigger file goes alone: a local one is streamed to the database as it is checked,
    a remote one is checked in Spark tasks and gathered on the driver first)."""
    batch: list[SourceFile] = []
    size = 0
    for r in files:
        if batch and (len(batch) >= files_per_batch or size + r.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(r.file)
        size += r.size
    if batch:
        yield batch


class ReplayPlan:
    """Stands in for the checkpoint's log: which files make up each replayed batch."""

    def __init__(self):
        self._batches: dict[int, list[SourceFile]] = {}

    def add(self, batch_id: int, files: list[SourceFile]) -> None:
        self._batches[batch_id] = files

    def files_of_batch(self, batch_id: int) -> list[SourceFile]:
        return self._batches.pop(batch_id)


def loaded_keys(sink: MySQLSink) -> set[str]:
    """Every file key in `ingest_files`: what a resumed rebuild skips without reading."""
    rows = sink.db.query("SELECT file_key FROM ingest_files")
    sink.db.jdbc.rollback()
    return {str(r[0]) for r in rows}


def rebuild(archives: list[str], folders: list[str], files_per_batch: int,
            progress: bool = True) -> int:
    """Load every file under the folders not loaded yet; an exit code."""
    for folder in [*archives, *folders]:
        path = local_path(folder)
        if path is not None and not path.is_dir():
            raise JobError(f"{folder} is not a folder: give the job's --archive-dir with"
                           " --archive, or a folder of event files with --from")
    settings = load_settings()
    spark = build_spark_session(settings)
    sink = MySQLSink(spark, settings)
    try:
        archived = [r for a in archives for r in _listed(spark, a, archive=True)]
        # A --from folder that holds the archive too (s3a://bucket) must not load its
        # files a second time under their archive names.
        in_archive = {r.file.uri for r in archived}
        files = oldest_first(archived + [r for d in folders for r in _listed(spark, d, False)
                                         if r.file.uri not in in_archive])
        sink.connect()
        sink.ensure_schema()
        done = loaded_keys(sink)
        todo = [r for r in files if FilePayload(r.file.name, None).key not in done]
        log.info("%d file(s) to replay: %d loaded before, %d to load", len(files),
                 len(files) - len(todo), len(todo))
        plan = ReplayPlan()
        writer = BatchWriter(sink, plan, settings)
        writer.set_query_id(str(uuid.uuid4()))
        return _load(writer, plan, todo, len(files), files_per_batch, progress)
    finally:
        sink.close()
        stop_spark_session(spark)


def _listed(spark: SparkSession, folder: str, archive: bool) -> list[Replay]:
    path = local_path(folder)
    if path is None:
        return replay_remote_files(spark, folder, archive)
    return replay_files(path, archive)


def _load(writer: BatchWriter, plan: ReplayPlan, todo: list[Replay], total: int,
          files_per_batch: int, progress: bool) -> int:
    bar = tqdm(total=total, initial=total - len(todo), unit="file", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    rows, started = 0, time.monotonic()
    try:
        for batch_id, batch in enumerate(batches_of(todo, files_per_batch,
                                                    DRIVER_BATCH_MAX_BYTES)):
            plan.add(batch_id, batch)
            writer(None, batch_id)
            rows = writer.rows_read
            bar.update(len(batch))
            bar.set_postfix_str(f"{rows / max(1e-9, time.monotonic() - started):,.0f} rows/s")
    finally:
        bar.close()
    log.info("rebuild done: %d file(s) loaded, %d rows read in %.1f s", len(todo), rows,
             time.monotonic() - started)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("pipeline.ops.rebuild", __doc__.split("\n\n")[0])
    parser.add_argument("--archive", action="append", default=[], metavar="DIR",
                        help="an archive folder of the job (--archive-dir): files recorded"
                             " under the paths they had before they were archived")
    parser.add_argument("--from", dest="folders", action="append", default=[],
                        metavar="DIR", help="a folder of event files (searched recursively),"
                                            " such as the source folder")
    parser.add_argument("--files-per-batch", type=int, default=FILES_PER_BATCH, metavar="N",
                        help="files per transaction (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.files_per_batch < 1:
        parser.error("--files-per-batch must be at least 1")
    if not args.archive and not args.folders:
        parser.error("give at least one --archive or --from folder")
    configure_logging()
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("py4j.clientserver").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return rebuild(args.archive, args.folders, args.files_per_batch,
                       progress=not args.no_progress)
    except SinkError as e:
        log.error("%s", e)
        return 1
    except PipelineError as e:
        log.error("%s", e)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted: run the same command again to go on (nothing is doubled)")
        return 130


if __name__ == "__main__":
    sys.exit(main())
