"""The four ways a batch's files are read and checked, and the one place that picks one.

A Spark task costs about 0.3 s of fixed Python-worker overhead, far more than checking a
few KB, and one file is never split across tasks anyway. So with a local master, batches of
local files are read right here on the driver: in one go up to --driver-batch-max-bytes,
streamed chunk by chunk while the database writes above it. Files on hdfs://, s3a:// (or
every batch, with --driver-batch-max-bytes 0) go through Spark tasks, except a local batch
holding something Spark must not open (a FIFO would block its task, a link would be
followed).

On a cluster (a master that is not `local`), a batch over --driver-batch-max-bytes (every
batch with 0, and every batch on hdfs://, s3a://) is read and checked by executor tasks, one
whole file per task, and its chunks reach the driver one file at a time
(`toLocalIterator`), straight into the batch's open transaction: the driver holds a file or
two, never the batch.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from operator import attrgetter
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.config import Settings
from pipeline.contract import EVENTS_JSON
from pipeline.contract import FILE_QUARANTINED
from pipeline.contract import KIND_REFUSED
from pipeline.contract import Chunk
from pipeline.contract import FilePayload
from pipeline.contract import printable_name
from pipeline.errors import BatchRejected
from pipeline.errors import FileRefused
from pipeline.errors import JobError
from pipeline.read.checkpoint import SourceFile
from pipeline.read.local import LocalFile
from pipeline.read.local import decode_uri
from pipeline.read.local import file_facts
from pipeline.read.local import uri_spellings
from pipeline.read.spark_source import raw_lines
from pipeline.read.spark_source import uri_exists
from pipeline.validate.chunks import file_chunks
from pipeline.validate.columnar import chunks_of_pieces
from pipeline.validate.in_spark import refusal
from pipeline.validate.in_spark import to_payload_chunks
from pipeline.validate.in_spark import unpack_payload

log = logging.getLogger(__name__)

ROUTE_DRIVER, ROUTE_STREAMED, ROUTE_SPARK = "driver", "driver, streamed", "spark"
ROUTE_SPARK_STREAMED = "executors, streamed"
# Local batches up to this size are checked on the driver in one go; bigger ones are
# streamed: checked chunk by chunk while the database takes the chunk before.
DRIVER_BATCH_MAX_BYTES = 4 * 1024 * 1024


def _regular_file_size(path: Path) -> int | None:
    """Size of a regular file (links not followed); None for anything else, 0 for nothing."""
    try:
        status = os.lstat(path)
    except OSError:
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else None


def on_cluster(master: str) -> bool:
    """Executors on other processes (standalone, YARN, Kubernetes), not threads of ours."""
    return not master.startswith("local")


def choose_route(files: list[SourceFile], driver_batch_max_bytes: int,
                 cluster: bool = False) -> str:
    """Where a batch is read and checked; decided here only."""
    paths = [f.local_path for f in files]
    if not all(paths):
        return ROUTE_SPARK_STREAMED if cluster else ROUTE_SPARK
    sizes = [_regular_file_size(p) for p in paths]
    spark_may_open = None not in sizes
    total = sum(size or 0 for size in sizes)
    if cluster and spark_may_open and (driver_batch_max_bytes <= 0
                                       or total > driver_batch_max_bytes):
        return ROUTE_SPARK_STREAMED
    if driver_batch_max_bytes <= 0:
        return ROUTE_SPARK if spark_may_open else ROUTE_DRIVER
    return ROUTE_STREAMED if total > driver_batch_max_bytes else ROUTE_DRIVER


# The columnar checks have a fixed cost per file that a small file does not repay, and a
# batch of small files pays it for each (docs/benchmarks.md#what-the-codes-constants-rest-on).
# Below this size a file takes the per-line rules; the output is the same
# (tests/test_columnar.py).
COLUMNAR_MIN_BYTES = 64 * 1024


def checked_chunks(source: SourceFile, target: FilePayload, settings: Settings,
                   chunk_bytes: int, event_format: str = EVENTS_JSON
                   ) -> Iterator[tuple[str, int, str]]:
    """(kind, rows, payload) chunks of one local file, read on the driver. Marks `target`
    missing or quarantined instead when the file is gone or not a regular file, and sets
    its facts once every line is read.

    FileRefused escapes when reading failed part way or the file changed while it was read:
    some of its chunks are out already, so the caller must take them back.
    """
    try:
        local = LocalFile(source.local_path)
    except FileNotFoundError:
        target.mark_missing()
        log.warning("%s disappeared before it could be read; recorded as missing",
                    printable_name(source.name))
        return
    except FileRefused as e:
        target.quarantine(e.reason, e.detail)
        log.warning("%s quarantined as a whole: %s", printable_name(source.name), e)
        return
    if local.size < COLUMNAR_MIN_BYTES:
        chunks = file_chunks(local.lines(), settings.event_types, settings.source_time_zone,
                             event_format=event_format, chunk_bytes=chunk_bytes)
    else:
        chunks = chunks_of_pieces(local.line_pieces(), settings.event_types,
                                  settings.source_time_zone, event_format=event_format,
                                  chunk_bytes=chunk_bytes)
    emitted = False
    try:
        for kind, _chunk, rows, text in chunks:
            emitted = True
            yield kind, rows, text
    except FileRefused as e:
        if emitted:
            raise
        # Refused before any of its rows went out (its header): nothing to take back.
        target.quarantine(e.reason, e.detail)
        log.warning("%s quarantined as a whole: %s", printable_name(source.name), e)
        return
    target.facts = local.facts()


def read_local_payload(source: SourceFile, settings: Settings, chunk_bytes: int
                       ) -> FilePayload:
    """One local file read and checked on the driver: its rows, or why it has none."""
    payload = FilePayload(source.name, source.modified_at)
    try:
        for kind, rows, text in checked_chunks(source, payload, settings, chunk_bytes):
            payload.add(kind, rows, text)
    except FileRefused as e:
        payload.quarantine(e.reason, e.detail)
        log.warning("%s quarantined as a whole: %s", printable_name(source.name), e)
    return payload


def read_in_spark(batch_df: DataFrame, files: list[SourceFile], settings: Settings,
                  chunk_bytes: int) -> list[FilePayload]:
    """Every file's chunks made by Spark tasks, then gathered here by file."""
    chunks = to_payload_chunks(raw_lines(batch_df), settings.event_types,
                               settings.source_time_zone, chunk_bytes=chunk_bytes).collect()
    payloads = {f.name: FilePayload(f.name, f.modified_at) for f in files}
    # A file replayed from an archive is read where it is, recorded under its first name.
    recorded = {decode_uri(f.uri)[0]: f.name for f in files}
    for chunk in sorted(chunks, key=attrgetter("chunk")):
        name = decode_uri(chunk.source_file)[0]
        name = recorded.get(name, name)
        # A file the log did not list is still accounted for, never dropped.
        target = payloads.setdefault(name, FilePayload(name, None))
        if chunk.kind == KIND_REFUSED:
            _refuse(target, refusal(chunk.payload))
        elif target.status != FILE_QUARANTINED:
            target.add(chunk.kind, chunk.rows, chunk.payload)
    for f in files:
        target = payloads[f.name]
        had_rows = target.status == FILE_QUARANTINED or target.rows_valid + target.rows_rejected
        _finish(batch_df.sparkSession, f, target, bool(had_rows))
    return list(payloads.values())


def _refuse(target: FilePayload, refused: FileRefused) -> None:
    target.quarantine(refused.reason, refused.detail)
    log.warning("%s quarantined as a whole: %s", printable_name(target.source_file), refused)


def _finish(spark: SparkSession, source: SourceFile, target: FilePayload, had_rows: bool
            ) -> None:
    """After Spark read a file: record it missing, or its facts."""
    # No rows: an empty file, or one that vanished after Spark listed it (Spark skips it
    # with ignoreMissingFiles rather than fail this batch on every restart).
    if not had_rows and not uri_exists(spark, source.uri):
        target.mark_missing()
        log.warning("%s disappeared before it could be read; recorded as missing",
                    printable_name(source.name))
    elif source.local_path is not None:
        # Described by a second read of the file on the driver (Spark's read gives no
        # bytes back): a file that changed in between shows in reconcile, not here.
        try:
            target.facts = file_facts(source.local_path)
        except (FileRefused, FileNotFoundError) as e:
            log.warning("%s: no size, lines and hash recorded: %s",
                        printable_name(source.name), e)


def executors_alive(batch_df: DataFrame) -> bool:
    """Whether the application still has an executor besides the driver."""
    tracker = batch_df.sparkSession.sparkContext._jsc.sc().statusTracker()
    return len(tracker.getExecutorInfos()) > 1


def chunks_from_executors(batch_df: DataFrame, sources: list[SourceFile],
                          targets: list[FilePayload], settings: Settings, chunk_bytes: int,
                          whole_batch: bool = True,
                          event_format: str = EVENTS_JSON) -> Iterator[Chunk]:
    """The chunks of `sources`, checked by executor tasks (one whole file per task), handed
    over one task's output at a time: `toLocalIterator` runs one Spark job per partition,
    and with `prefetchPartitions` the next one while this one is written. So the driver
    holds about two files' chunks, however many files the batch has; reading again (a
    retry) runs the tasks again rather than keep anything.

    Once every chunk is out, `targets` (the FilePayloads of `sources`, by name) are
    recorded missing or get their facts. Not `whole_batch`: only `sources` are read (a file
    written alone). A failed Spark job raises JobError.

    The tasks give events in `event_format` already, each payload deflated: a file's
    chunks travel as one task result, which the driver's transport holds whole, so its
    size is what the driver's memory follows (docs/cluster.md).
    """
    lines = batch_df
    if not whole_batch:
        # Spark prunes files on _metadata.file_path: a file written alone is read alone.
        # Its rows say `file:/...` where the log says `file:///...`: match every spelling,
        # or the file would be read as empty.
        lines = batch_df.where(F.col("source_file").isin(
            sorted(u for s in sources for u in uri_spellings(s.uri))))
    chunks = to_payload_chunks(raw_lines(lines), settings.event_types,
                               settings.source_time_zone, chunk_bytes=chunk_bytes,
                               event_format=event_format, packed=True)
    seen: set[str] = set()
    by_name = {t.source_file: t for t in targets}
    try:
        for row in chunks.toLocalIterator(prefetchPartitions=True):
            name = decode_uri(row.source_file)[0]
            seen.add(name)
            if row.kind != KIND_REFUSED:
                yield name, row.kind, row.rows, unpack_payload(row.payload)
            elif name in by_name:  # refused at its header, before any of its chunks
                _refuse(by_name[name], refusal(unpack_payload(row.payload)))
            else:
                log.warning("%s (not in the checkpoint's list) refused: %s",
                            printable_name(name), refusal(unpack_payload(row.payload)))
    except Exception as e:  # noqa: BLE001 - a Spark job that failed, whatever its type
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not executors_alive(batch_df):
            raise JobError(f"Spark could not read and check the batch's files: {first};"
                           " no executor is left, so nothing of the batch was committed; it"
                           " runs again on restart") from e
        # Executors are there, yet the tasks failed (Spark retried each): a file is the
        # cause. The batch's files are then written one by one, and the one whose own
        # read fails is quarantined, so no single file can stop the stream.
        if whole_batch:
            raise BatchRejected(f"Spark tasks failed on the batch's files: {first}") from e
        raise FileRefused("unreadable", f"Spark tasks could not read it: {first}") from e
    for source in sources:
        _finish(batch_df.sparkSession, source, by_name[source.name], source.name in seen)
