"""The MySQL sink: the exactly-once commit protocol of the streaming job.

One JDBC connection on the driver, kept open across micro-batches. Each batch is one
transaction, sent as one multi-statement script (one network round trip when it fits in a
packet): the events upsert, the rejected rows, one `ingest_files` row per file and the
`ingest_batches` ledger row, then COMMIT. A replayed batch (Spark re-runs a batch whose
commit it did not record) collides with its own ledger or file rows, is rolled back and
recognised; files loaded under an earlier checkpoint are skipped the same way. Transient
failures are retried with backoff; data the server refuses raises BatchRejected.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import replace

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pipeline.config import Settings
from pipeline.contract import BatchPayload
from pipeline.contract import BatchResult
from pipeline.contract import Chunk
from pipeline.contract import CommitHooks
from pipeline.errors import BatchRejected
from pipeline.errors import DatabaseUnreachable
from pipeline.errors import SinkBusy
from pipeline.errors import SinkError
from pipeline.write import statements as sql
from pipeline.write.connection import DUPLICATE_KEY
from pipeline.write.connection import Connection
from pipeline.write.connection import is_data_error
from pipeline.write.connection import is_too_large
from pipeline.write.connection import is_transient
from pipeline.write.ledger import Ledger
from pipeline.write.schema import ensure_schema
from pipeline.write.streamed import ChunkStream
from pipeline.write.streamed import RereadStream
from pipeline.write.streamed import StreamedWrite
from pipeline.write.streamed import staged_for_load

log = logging.getLogger(__name__)


class _TransientError(Exception):
    pass


class MySQLSink:
    """Writes micro-batches transactionally through one JDBC connection on the driver."""

    # Room in a statement for the text around a chunk: names, the ledger's columns.
    STATEMENT_OVERHEAD = 16 * 1024

    def __init__(self, spark: SparkSession, settings: Settings,
                 hooks: CommitHooks | None = None):
        self._settings = settings
        self._hooks = hooks or CommitHooks()
        self.db = Connection(spark, settings, settings.bulk_load)
        self.ledger = Ledger(self.db)
        # Batches commit on Spark's callback thread; the job's backlog check runs on its own.
        self._lock = threading.RLock()

    @property
    def tls_version(self) -> str:
        return self.db.tls_version

    @property
    def bulk_load(self) -> bool:
        """Big batches go through LOAD DATA LOCAL: wanted, and allowed by the server."""
        return self.db.bulk_load_wanted and self.db.local_infile

    def staged_for_load(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """`streamed.staged_for_load` on this sink's connection."""
        return staged_for_load(chunks, self.db)

    @property
    def packet_limit(self) -> int:
        """Bytes one script may have: half the server's max_allowed_packet, for safety."""
        return max(64 * 1024, self.db.max_allowed_packet // 2)

    @property
    def chunk_max_bytes(self) -> int:
        """The most UTF-8 bytes one chunk of rows may have: it travels hex-encoded (twice
        its size) inside one statement, which must stay below the packet limit."""
        return max(4096, (self.packet_limit - self.STATEMENT_OVERHEAD) // 2)

    def connect(self) -> None:
        self.db.open()

    def close(self) -> None:
        self.db.close()

    def ensure_schema(self) -> None:
        ensure_schema(self.db, self._settings.mysql.user)

    # -- committing --------------------------------------------------------------------------
    def commit_batch(self, batch: BatchPayload, ledger: bool = True) -> BatchResult:
        """Make the batch durable exactly once, retrying transient failures with backoff.

        Without `ledger` only its files are written (one of a batch written file by file);
        `commit_ledger` then closes the batch. BatchRejected: the data was refused.
        """
        with self._lock:
            return self._with_retries(
                batch, lambda attempt: self._commit_once(batch, attempt, ledger))

    def commit_ledger(self, batch: BatchPayload) -> BatchResult:
        """The ledger row of a batch whose files were committed one by one before; its
        totals are summed from those files' rows, in the same transaction."""
        statements = sql.ledger_from_files(batch)

        def once(attempt: int) -> BatchResult:
            try:
                counts = self.db.run_script(statements, self.packet_limit)
            except Py4JJavaError as e:
                self.rollback_after(e, batch)
                return BatchResult(replayed=True, attempts=attempt)
            return BatchResult(replayed=False, rows_written=counts[0],
                               rows_duplicate=counts[1], attempts=attempt)

        with self._lock:
            return self._with_retries(batch, once)

    def commit_streamed(self, batch: BatchPayload, chunks: Iterable[Chunk],
                        event_format: str, ledger: bool = True) -> BatchResult:
        """Make a big batch durable exactly once while its later rows are still checked.

        `batch.files` come without rows; `chunks` yields each file's (source_file, kind,
        rows, payload) in file order, events as `event_format` text (TSV only when
        `bulk_load`). Chunks are kept until the commit: after a transient failure they are
        sent again on a new connection.
        """
        write = StreamedWrite(self, batch, ChunkStream(batch, iter(chunks)), event_format,
                              ledger)
        with self._lock:
            return self._with_retries(batch, write.attempt)

    def commit_streamed_reread(self, batch: BatchPayload,
                               open_chunks: Callable[[], AbstractContextManager[Iterator[Chunk]]],
                               event_format: str, ledger: bool = True) -> BatchResult:
        """As `commit_streamed`, but nothing is kept: each attempt opens a new read of the
        chunks with `open_chunks` (Spark runs the tasks again), so the driver's memory does
        not grow with the batch. The batch's files are counted afresh by every attempt.
        """
        write = StreamedWrite(self, batch, RereadStream(batch, open_chunks), event_format,
                              ledger)
        with self._lock:
            return self._with_retries(batch, write.attempt)

    def keys_loaded(self, keys: list[str], wait: bool = True) -> set[str]:
        """As `Ledger.keys_loaded`. Safe to call from another thread than the batches' (the
        job's backlog check). Not `wait`: SinkBusy at once while a batch commits (which may
        take minutes)."""
        if not self._lock.acquire(blocking=wait):
            raise SinkBusy("a batch is being committed")
        try:
            if not self.db.is_open:
                self.connect()
            return self.ledger.keys_loaded(keys)
        finally:
            self._lock.release()

    def commit(self, statements: list[str], batch_id: int) -> tuple[int, int]:
        """Send a batch's last statements and COMMIT: (written, duplicate)."""
        self._hooks.before_commit(batch_id)
        counts = self.db.run_script(statements, self.packet_limit)
        self._hooks.after_commit(batch_id)
        return counts

    def rollback_after(self, error: Py4JJavaError, batch: BatchPayload) -> None:
        """Roll back after a failed statement; return only for a duplicate key.

        A transient error is retried; an error in the data (BatchRejected) isolates the
        file that causes it; anything else stops the job with nothing of the batch written.
        """
        state, code, message, class_name = self.db.sql_error(error)
        self.db.rollback_quietly()
        if code == DUPLICATE_KEY:
            return
        first_line = message.splitlines()[0] if message else class_name
        if is_too_large(code, message):
            raise BatchRejected(f"database refused a statement of batch {batch.batch_id}"
                                f" as too large: {first_line}") from None
        if is_transient(state, code, class_name):
            raise _TransientError(first_line) from None
        if is_data_error(state, code, message):
            raise BatchRejected(f"database rejected the data of batch {batch.batch_id}:"
                                f" {first_line}") from None
        raise SinkError(f"database error in batch {batch.batch_id} (SQLSTATE {state}, code"
                        f" {code}): {first_line}. Nothing of the batch was written: fix the"
                        " cause and restart the job with the same checkpoint") from None

    def _with_retries(self, batch: BatchPayload,
                      commit_once: Callable[[int], BatchResult]) -> BatchResult:
        retry = self._settings.retry
        started = time.monotonic()
        for attempt in range(1, retry.max_attempts + 1):
            try:
                if not self.db.is_open:
                    self.connect()
                result = commit_once(attempt)
                return replace(result, db_ms=int((time.monotonic() - started) * 1000))
            except BatchRejected:
                self.close()  # the server may have dropped the connection with its refusal
                raise
            except (_TransientError, DatabaseUnreachable, Py4JJavaError) as failure:
                # A driver error that escaped unclassified (a ledger question on a stale
                # connection, say) is classified here: retried only when transient.
                error = self._transient(failure, batch)
                self.close()
                if attempt == retry.max_attempts:
                    raise SinkError(
                        f"database unavailable, batch {batch.batch_id} not written after"
                        f" {attempt} attempts: {error}. Nothing was lost: restart the job with"
                        " the same checkpoint once the database is back") from None
                delay = retry.delay(attempt)
                log.warning("batch %d: database unavailable (attempt %d/%d): %s; retrying in"
                            " %.1fs", batch.batch_id, attempt, retry.max_attempts, error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _transient(self, failure: Exception, batch: BatchPayload) -> Exception:
        """`failure` if it is worth another attempt; raises it classified otherwise."""
        if not isinstance(failure, Py4JJavaError):
            return failure
        try:
            self.rollback_after(failure, batch)
        except _TransientError as transient:
            return transient
        raise SinkError(f"batch {batch.batch_id}: unexpected duplicate key") from None

    def _commit_once(self, batch: BatchPayload, attempt: int, ledger: bool) -> BatchResult:
        skipped: set[str] = set()
        while True:
            statements = sql.batch_statements(batch, attempt, len(skipped), ledger=ledger)
            try:
                counts = self.commit(statements, batch.batch_id)
                return BatchResult(replayed=False, rows_written=counts[0],
                                   rows_duplicate=counts[1], files_skipped=len(skipped),
                                   attempts=attempt, skipped_keys=frozenset(skipped))
            except Py4JJavaError as e:
                self.rollback_after(e, batch)
            # A ledger or file row already exists: a replay, or files loaded before.
            if ledger and self.ledger.batch_committed(batch):
                return BatchResult(replayed=True, attempts=attempt)
            done = self.ledger.files_loaded(batch)
            if not done:
                raise SinkError(f"batch {batch.batch_id}: duplicate key but no earlier batch"
                                " or file explains it")
            skipped.update(done)
            batch = batch.only([f for f in batch.files if f.key not in done])
            if not ledger and not batch.files:
                return BatchResult(replayed=True, files_skipped=len(skipped), attempts=attempt,
                                   skipped_keys=frozenset(skipped))
