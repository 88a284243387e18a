"""The foreachBatch function: one micro-batch, from its files to the commit.

    files (Spark's checkpoint log) -> route (`routes.choose_route`) -> checked chunks
    -> sink commit (one transaction with the ledger row)

If the database refuses the batch's data, its files are written one by one and the file
that still fails is quarantined as a whole, so no single file can stop the stream.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import closing
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import SparkSession

from pipeline.config import Settings
from pipeline.contract import EVENTS_JSON
from pipeline.contract import EVENTS_TSV
from pipeline.contract import BatchPayload
from pipeline.contract import BatchResult
from pipeline.contract import FilePayload
from pipeline.contract import printable_name
from pipeline.errors import BatchRejected
from pipeline.errors import CheckpointDamaged
from pipeline.errors import FileRefused
from pipeline.errors import SinkError
from pipeline.errors import StopRequested
from pipeline.job.metrics import JobMetrics
from pipeline.job.prefetch import prefetched
from pipeline.job.routes import DRIVER_BATCH_MAX_BYTES
from pipeline.job.routes import ROUTE_DRIVER
from pipeline.job.routes import ROUTE_SPARK
from pipeline.job.routes import ROUTE_SPARK_STREAMED
from pipeline.job.routes import ROUTE_STREAMED
from pipeline.job.routes import checked_chunks
from pipeline.job.routes import choose_route
from pipeline.job.routes import chunks_from_executors
from pipeline.job.routes import on_cluster
from pipeline.job.routes import read_in_spark
from pipeline.job.routes import read_local_payload
from pipeline.read.checkpoint import CheckpointLog
from pipeline.read.checkpoint import SourceFile
from pipeline.read.spark_source import read_files
from pipeline.write.sink import MySQLSink
from pipeline.write.streamed import in_key_order

log = logging.getLogger(__name__)


class BatchWriter:
    """Called by Spark for each micro-batch, on its callback thread."""

    def __init__(self, sink: MySQLSink, checkpoint: CheckpointLog, settings: Settings,
                 driver_batch_max_bytes: int = DRIVER_BATCH_MAX_BYTES,
                 metrics: JobMetrics | None = None):
        self._sink = sink
        self._metrics = metrics
        self._checkpoint = checkpoint
        self._settings = settings
        self._driver_batch_max_bytes = driver_batch_max_bytes
        self._lock = threading.Lock()
        self._closing = False
        self._query_id: str | None = None
        self._query_id_ready = threading.Event()
        self.last_error: str | None = None
        self.batches = 0
        # Files of every batch this writer took (replays too): how the checkpoint's log grows.
        self.files_taken = 0
        self.rows_read = 0  # data rows of the batches this writer committed
        # (monotonic time, files) of recent batches: tells the supervisor the input rate.
        self.recent_batches: deque[tuple[float, int]] = deque(maxlen=10000)
        # Told the names of the files each commit recorded (the supervisor's backlog).
        self.on_commit: Callable[[list[str]], None] | None = None

    def set_query_id(self, query_id: str) -> None:
        """Spark's query id keys the ledger and goes into SQL text: a UUID, nothing else."""
        self._query_id = str(uuid.UUID(query_id))
        self._query_id_ready.set()

    def close_after_current_batch(self) -> None:
        """Wait for a batch in flight to commit; later batches will not commit."""
        with self._lock:
            self._closing = True

    def use_checkpoint(self, checkpoint: CheckpointLog) -> None:
        """Read batches' files from another checkpoint (a new generation) from now on."""
        with self._lock:
            self._checkpoint = checkpoint

    def reopen(self) -> None:
        """Accept batches again (for the next query on the same checkpoint)."""
        with self._lock:
            self._closing = False

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        with self._lock:
            if self._closing:
                log.info("batch %d not started: stopping (it runs again on restart)", batch_id)
                raise StopRequested(f"batch {batch_id} not started: stopping")
            try:
                self._write(batch_df, batch_id)
            except (SinkError, CheckpointDamaged) as e:
                self.last_error = str(e)
                raise
            except Exception as e:
                # Not expected: keep the whole story for whoever fixes it.
                log.exception("batch %d failed", batch_id)
                self.last_error = f"batch {batch_id} failed: {e}"
                raise

    def _write(self, batch_df: DataFrame, batch_id: int) -> None:
        started_at, t0 = datetime.now(UTC), time.monotonic()
        if not self._query_id_ready.wait(timeout=120):
            raise SinkError("the query id never became known; cannot key the batch ledger")
        files = self._checkpoint.files_of_batch(batch_id)
        self.files_taken += len(files)
        self.recent_batches.append((time.monotonic(), len(files)))
        # No DataFrame: files replayed by pipeline.ops.rebuild, in this process's Spark.
        spark = batch_df.sparkSession if batch_df is not None else SparkSession.active()
        cluster = batch_df is not None and on_cluster(spark.sparkContext.master)
        route = choose_route(files, self._driver_batch_max_bytes, cluster)
        if route in (ROUTE_SPARK, ROUTE_SPARK_STREAMED):
            # The listed files read by name, each once (read_files says why not batch_df).
            batch_df = read_files(spark, [f.uri for f in files])
        if route == ROUTE_STREAMED:
            batch, result, route = self._write_streamed(files, batch_id, started_at)
        elif route == ROUTE_SPARK_STREAMED:
            batch, result, route = self._write_from_executors(batch_df, files, batch_id,
                                                              started_at)
        else:
            chunk_bytes = self._sink.chunk_max_bytes
            payloads = ([read_local_payload(f, self._settings, chunk_bytes) for f in files]
                        if route == ROUTE_DRIVER else
                        read_in_spark(batch_df, files, self._settings, chunk_bytes))
            batch = BatchPayload(self._query_id, batch_id, payloads, started_at,
                                 int((time.monotonic() - t0) * 1000))
            try:
                result = self._sink.commit_batch(batch)
            except BatchRejected as e:
                result = self._commit_file_by_file(batch, e, self._commit_one_file)
        self.batches += 1
        if not result.replayed:
            self.rows_read += sum(f.rows_valid + f.rows_rejected for f in batch.files
                                  if f.key not in result.skipped_keys)
        if self._metrics is not None:
            self._metrics.record_batch(batch, result)
        self._committed([f.source_file for f in batch.files])
        log_batch(batch, result, route)

    def _committed(self, names: list[str]) -> None:
        if self.on_commit is not None:
            self.on_commit(names)

    def record_refused_entry(self, name: str, reason: str, detail: str,
                             name_bytes: bytes | None = None) -> None:
        """Quarantine an entry of the source folder that no batch will ever hold
        (`name_bytes`: the name's bytes when they are not UTF-8, `name` then escapes them)."""
        entry = FilePayload(name, None, name_bytes=name_bytes)
        entry.quarantine(reason, detail)
        batch = BatchPayload(self._query_id, -1, [entry], datetime.now(UTC), 0)
        with self._lock:
            result = self._commit_one_file(batch, entry)
            if self._metrics is not None and not result.replayed:
                self._metrics.record_files([entry])
        self._committed([name])

    def _commit_one_file(self, batch: BatchPayload, f: FilePayload) -> BatchResult:
        return self._sink.commit_batch(batch.only([f]), ledger=False)

    def _commit_file_by_file(self, batch: BatchPayload, error: Exception,
                             commit_file: Callable[[BatchPayload, FilePayload], BatchResult]
                             ) -> BatchResult:
        """Write a refused batch's files one transaction each, then its ledger row.

        A file that still fails alone is quarantined as a whole with the error. Each file's
        transaction holds its `ingest_files` row, so a replay after a crash skips the files
        already written; the ledger row comes last.
        """
        log.warning("batch %d: %s; writing its %d file(s) one by one to isolate the cause",
                    batch.batch_id, error, len(batch.files))
        skipped: set[str] = set()
        for f in batch.files:
            try:
                skipped |= commit_file(batch, f).skipped_keys
            except (BatchRejected, FileRefused) as e:
                f.quarantine(e.reason if isinstance(e, FileRefused) else "database_rejected",
                             str(e))
                log.warning("batch %d: %s quarantined as a whole: %s", batch.batch_id,
                            printable_name(f.source_file), e)
                skipped |= self._commit_one_file(batch, f).skipped_keys
        return replace(self._sink.commit_ledger(batch), files_skipped=len(skipped),
                       skipped_keys=frozenset(skipped))

    def _write_streamed(self, files: list[SourceFile], batch_id: int, started_at: datetime
                        ) -> tuple[BatchPayload, BatchResult, str]:
        """Check a big batch on the driver, chunk by chunk, while the sink writes.

        One file is one Spark task anyway, so Spark would add nothing but a wait: checks
        and write run one after the other there. Here they overlap, on two cores.
        """
        batch = BatchPayload(self._query_id, batch_id,
                             [FilePayload(f.name, f.modified_at) for f in files], started_at, 0)
        event_format = EVENTS_TSV if self._sink.bulk_load else EVENTS_JSON
        sources = {f.name: f for f in files}

        def stream(targets: list[FilePayload], ledger: bool) -> BatchResult:
            def checked() -> Iterator[tuple[str, str, int, str]]:
                t0 = time.monotonic()
                for target in targets:
                    for kind, rows, text in checked_chunks(
                            sources[target.source_file], target, self._settings,
                            self._sink.chunk_max_bytes, event_format):
                        yield target.source_file, kind, rows, text
                batch.prepare_ms = int((time.monotonic() - t0) * 1000)

            part = batch if targets is batch.files else batch.only(targets)
            # Sorting for the load is done here, in the checks' thread, not the writer's.
            units = self._sink.staged_for_load(in_key_order(checked())) \
                if event_format == EVENTS_TSV else checked()
            with prefetched(units, name=f"checks-batch-{batch_id}") as chunks:
                return self._sink.commit_streamed(part, chunks, event_format, ledger=ledger)

        def commit_file(_batch: BatchPayload, target: FilePayload) -> BatchResult:
            target.reset()  # read again from the start: its first read was rolled back
            return stream([target], ledger=False)

        try:
            result = stream(batch.files, ledger=True)
        except (BatchRejected, FileRefused) as e:
            result = self._commit_file_by_file(batch, e, commit_file)
        route = ROUTE_STREAMED + (" as LOAD DATA" if event_format == EVENTS_TSV else "")
        return batch, result, route


    def _write_from_executors(self, batch_df: DataFrame, files: list[SourceFile],
                              batch_id: int, started_at: datetime
                              ) -> tuple[BatchPayload, BatchResult, str]:
        """Have executor tasks check a batch on a cluster, and write their chunks as they
        come, one file's at a time, into the batch's one transaction.

        Nothing is kept on the driver: a retry after a transient database error runs the
        Spark read again. A lost executor's tasks are rerun by Spark within the same read;
        chunks reach the transaction only from finished tasks, so none comes twice.
        """
        batch = BatchPayload(self._query_id, batch_id,
                             [FilePayload(f.name, f.modified_at) for f in files], started_at, 0)
        sources = {f.name: f for f in files}
        event_format = EVENTS_TSV if self._sink.bulk_load else EVENTS_JSON

        def stream(targets: list[FilePayload], ledger: bool) -> BatchResult:
            part = batch if targets is batch.files else batch.only(targets)
            whole = targets is batch.files
            known = [t for t in targets if t.source_file in sources]

            @contextmanager
            def open_chunks() -> Iterator[Iterator]:
                t0 = time.monotonic()
                read = chunks_from_executors(
                    batch_df, [sources[t.source_file] for t in known], known, self._settings,
                    self._sink.chunk_max_bytes, whole_batch=whole,
                    event_format=event_format)
                with closing(read), prefetched(read, name=f"executors-batch-{batch_id}") as c:
                    yield c
                batch.prepare_ms = int((time.monotonic() - t0) * 1000)

            return self._sink.commit_streamed_reread(part, open_chunks, event_format,
                                                     ledger=ledger)

        def commit_file(_batch: BatchPayload, target: FilePayload) -> BatchResult:
            if target.source_file not in sources:
                # Its rows came with the batch, not from the checkpoint's list: it cannot be
                # read alone, and committing it with no rows would lose them.
                raise FileRefused("database_rejected", "its batch was refused and the file"
                                  " is not in the checkpoint's list, so it cannot be written"
                                  " alone (docs/bad-input.md: what to do with a"
                                  " quarantined file)")
            return stream([target], ledger=False)

        try:
            result = stream(batch.files, ledger=True)
        except (BatchRejected, FileRefused) as e:
            result = self._commit_file_by_file(batch, e, commit_file)
        return batch, result, ROUTE_SPARK_STREAMED + (
            " as LOAD DATA" if event_format == EVENTS_TSV else "")


def log_batch(batch: BatchPayload, result: BatchResult, where: str) -> None:
    """One INFO line per batch with its figures."""
    if result.replayed:
        log.info("batch %d: already committed before a restart (replay): nothing written",
                 batch.batch_id)
        return
    rows_read = sum(f.rows_valid + f.rows_rejected for f in batch.files)
    rejected = sum(f.rows_rejected for f in batch.files)
    newest = max((f.modified_at for f in batch.files if f.modified_at), default=None)
    latency = (f", latency {(datetime.now(UTC) - newest).total_seconds():.2f}s"
               if newest else "")
    skipped = (f", {result.files_skipped} file(s) loaded earlier skipped"
               if result.files_skipped else "")
    log.info("batch %d: %d file(s), %d rows read -> %d written, %d rejected, %d duplicate;"
             " checked in %d ms (%s), db %d ms (%d attempt%s)%s%s", batch.batch_id,
             len(batch.files), rows_read, result.rows_written, rejected, result.rows_duplicate,
             batch.prepare_ms, where, result.db_ms, result.attempts,
             "" if result.attempts == 1 else "s", latency, skipped)
