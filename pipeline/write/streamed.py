"""Big batches written while their later rows are still being checked.

The chunks of a streamed batch go into one open transaction as they arrive; the file rows,
the ledger row and COMMIT come last, so a crash at any point leaves nothing behind. Events
go through LOAD DATA LOCAL from memory when the server allows it, else INSERT ... JSON_TABLE.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextlib import contextmanager
from typing import TYPE_CHECKING

from py4j.protocol import Py4JJavaError

from pipeline.contract import EVENTS_TSV
from pipeline.contract import KIND_EVENT
from pipeline.contract import BatchPayload
from pipeline.contract import BatchResult
from pipeline.contract import Chunk
from pipeline.contract import FilePayload
from pipeline.errors import BatchRejected
from pipeline.errors import SinkError
from pipeline.write import statements as sql
from pipeline.write.connection import DUPLICATE_KEY
from pipeline.write.connection import MAX_WARNINGS
from pipeline.write.connection import Connection

if TYPE_CHECKING:
    from pipeline.write.sink import MySQLSink


def _counted(batch: BatchPayload, chunks: Iterable[Chunk]
             ) -> Iterator[tuple[FilePayload, str, int, str]]:
    """Each chunk with its file, counted into that file as it goes by."""
    files = {f.source_file: f for f in batch.files}
    for source_file, kind, rows, payload in chunks:
        f = files.get(source_file)
        if f is None:  # not in the checkpoint's list: still accounted for, never dropped
            f = files[source_file] = FilePayload(source_file, None)
            batch.files.append(f)
        f.count(kind, rows, payload)
        yield f, kind, rows, payload


class ChunkStream:
    """A streamed batch's chunks: read once from the checks, kept to send again on a retry.

    The counts in the batch's files grow as the chunks arrive.
    """

    def __init__(self, batch: BatchPayload, chunks: Iterator[Chunk]):
        self._batch = batch
        self._chunks = chunks
        self._received: list[tuple[FilePayload, str, int, str]] = []

    @contextmanager
    def attempt(self) -> Iterator[Iterator[tuple[FilePayload, str, int, str]]]:
        yield self._replay_then_read()

    def _replay_then_read(self) -> Iterator[tuple[FilePayload, str, int, str]]:
        yield from self._received
        for received in _counted(self._batch, self._chunks):
            self._received.append(received)
            yield received


class RereadStream:
    """A streamed batch's chunks read afresh for every attempt and never kept, so memory
    stays bounded however big the batch: `open_chunks` opens a new read of them.

    Each attempt starts the batch's files over (counts, missing, facts): the read says
    them again.
    """

    def __init__(self, batch: BatchPayload,
                 open_chunks: Callable[[], AbstractContextManager[Iterator[Chunk]]]):
        self._batch = batch
        self._open = open_chunks

    @contextmanager
    def attempt(self) -> Iterator[Iterator[tuple[FilePayload, str, int, str]]]:
        for f in self._batch.files:
            f.reset()
        with self._open() as chunks:
            yield _counted(self._batch, chunks)


# InnoDB takes rows in primary-key order far faster than in random order, so each unit is
# sorted by id (docs/benchmarks.md#bulk-loading-in-key-order). A unit is bounded so that
# the driver's memory is; the first ones are smaller so that the database starts early.
LOAD_UNIT_ROWS = 200_000
FIRST_UNIT_ROWS = 25_000


def _tsv_lines(tsv: str) -> list[str]:
    """The rows of TSV text, without their newlines (escaped TSV holds no raw newline
    inside a value, so each line is one row)."""
    return tsv[:-1].split("\n")


def _event_id(tsv_line: str) -> str:
    return tsv_line[:tsv_line.index("\t")]  # no copy of the rest of the line


def in_key_order(chunks: Iterable[tuple[str, str, int, str]],
                 unit_rows: int = LOAD_UNIT_ROWS, first_unit_rows: int = FIRST_UNIT_ROWS
                 ) -> Iterator[tuple[str, str, int, str]]:
    """(source_file, kind, rows, payload) chunks with each file's TSV event chunks merged
    into units sorted by event_id, the first of about `first_unit_rows` rows, each next one
    twice as big up to `unit_rows`; other chunks unchanged.

    The sort is stable and units keep file order, so of two events with the same id the
    earlier line still comes first, and is still the one kept. Units never mix files; the
    size goes on doubling from one file to the next (only the batch's start needs small).
    """
    unit: list[str] = []
    unit_file: str | None = None
    limit = min(first_unit_rows, unit_rows)

    def flush() -> Iterator[tuple[str, str, int, str]]:
        nonlocal limit
        if unit:
            unit.sort(key=_event_id)
            yield unit_file, KIND_EVENT, len(unit), "".join(unit)
            unit.clear()
            limit = min(limit * 2, unit_rows)

    for source_file, kind, rows, payload in chunks:
        if source_file != unit_file:
            yield from flush()
            unit_file = source_file
        if kind != KIND_EVENT or not rows:
            yield source_file, kind, rows, payload
            continue
        unit.extend(line + "\n" for line in _tsv_lines(payload))
        if len(unit) >= limit:
            yield from flush()
    yield from flush()


class StagedTsv(str):
    """TSV text whose bytes already wait in the JVM as an input stream (`staged`), so the
    writer's thread does not spend its time copying them through py4j. Used once; a retry
    copies the text again."""

    staged = None


def staged_for_load(chunks: Iterable[tuple[str, str, int, str]], db: Connection
                    ) -> Iterator[tuple[str, str, int, str]]:
    """The chunks, TSV events as StagedTsv: run this in the thread that makes them."""
    for source_file, kind, rows, payload in chunks:
        if kind == KIND_EVENT:
            payload = StagedTsv(payload)
            payload.staged = db.input_stream(payload.encode("utf-8"))
        yield source_file, kind, rows, payload


def _halves(tsv: str) -> list[tuple[int, str]]:
    lines = _tsv_lines(tsv)
    half = len(lines) // 2
    return [(half, "\n".join(lines[:half]) + "\n"),
            (len(lines) - half, "\n".join(lines[half:]) + "\n")]


def _warnings(stmt, max_listed: int) -> tuple[int, int, list[str]]:
    """(how many warnings the last statement left, how many are listed, the non-duplicate
    ones as text). Read right after it: on MySQL any other statement, even RELEASE
    SAVEPOINT, empties the list (MariaDB keeps it for statements without tables)."""
    rs = stmt.executeQuery("SHOW WARNINGS")
    listed, other = 0, []
    while rs.next():
        listed += 1
        if rs.getInt(2) != DUPLICATE_KEY:
            other.append(f"{rs.getInt(2)} {rs.getString(3)}")
    rs.close()
    total = listed
    if total >= max_listed:  # the list may be cut: ask for the count (also diagnostic)
        rs = stmt.executeQuery("SHOW COUNT(*) WARNINGS")
        rs.next()
        total = rs.getInt(1)
        rs.close()
    return total, listed, other


def load_events(db: Connection, stmt, rows: int, tsv: str,
                max_listed: int = MAX_WARNINGS) -> int:
    """LOAD DATA LOCAL of one TSV chunk from memory; the number of new events.

    LOCAL turns every data error into a warning, like IGNORE: a row the table refuses (a
    constraint) is skipped and would pass for a duplicate if only rows were counted, and a
    value too long is cut and stored. So every warning's code is read, and anything but
    one duplicate key per skipped row refuses the batch rather than store it altered.
    The server lists at most `max_listed` warnings: a chunk with more rows than that is
    loaded after a savepoint, and if it left more warnings than are listed, it is taken
    back and loaded again in halves (a smaller one with that many must have other
    warnings than duplicates, one per skipped row, and is refused).
    """
    big = rows > max_listed
    if big:
        stmt.execute("SAVEPOINT load_unit")  # a later one of the same name replaces it
    staged = getattr(tsv, "staged", None)
    if staged is not None:
        tsv.staged = None
    else:
        staged = db.input_stream(tsv.encode("utf-8"))
    stmt.setLocalInfileInputStream(staged)
    stmt.execute(sql.EVENTS_LOAD)
    loaded = stmt.getUpdateCount()
    total, listed, other = _warnings(stmt, max_listed)
    if total > listed and big and not other:
        stmt.execute("ROLLBACK TO SAVEPOINT load_unit")
        return sum(load_events(db, stmt, n, part, max_listed) for n, part in _halves(tsv))
    if other or total != rows - loaded:
        first = other[0] if other else f"{total} warnings for {rows - loaded} skipped rows"
        raise BatchRejected(
            f"LOAD DATA of {rows} events skipped {rows - loaded} rows that are not all"
            f" duplicates ({first}): the events table refuses values the checks passed;"
            " check it matches sql/001_schema.sql (nothing of this batch was committed)")
    return loaded


class StreamedWrite:
    """One streamed batch; `attempt` is called by the sink's retry loop."""

    def __init__(self, sink: MySQLSink, batch: BatchPayload,
                 stream: ChunkStream | RereadStream, event_format: str, ledger: bool):
        self._sink = sink
        self._batch = batch
        self._stream = stream
        self._format = event_format
        self._ledger = ledger

    def attempt(self, attempt: int) -> BatchResult:
        sink, batch = self._sink, self._batch
        # Ask first: sending a big batch only to find it committed before wastes minutes.
        if self._ledger and sink.ledger.batch_committed(batch):
            return BatchResult(replayed=True, attempts=attempt)
        done = sink.ledger.files_loaded(batch)
        with self._stream.attempt() as chunks:
            written = self._send_rows(done, chunks)
        kept = batch.only([f for f in batch.files if f.key not in done])
        statements = sql.batch_statements(kept, attempt, len(done), written,
                                          ledger=self._ledger)
        try:
            counts = sink.commit(statements, batch.batch_id)
        except Py4JJavaError as e:
            sink.rollback_after(e, batch)
            if self._ledger and sink.ledger.batch_committed(batch):
                return BatchResult(replayed=True, attempts=attempt)
            raise SinkError(f"batch {batch.batch_id}: its files were loaded by another job"
                            " while it was written; nothing of it was committed") from None
        return BatchResult(replayed=False, rows_written=counts[0], rows_duplicate=counts[1],
                           files_skipped=len(done), attempts=attempt,
                           skipped_keys=frozenset(done))

    def _send_rows(self, done: dict, chunks: Iterator[tuple[FilePayload, str, int, str]]
                   ) -> dict[str, int]:
        """Every chunk into the open transaction; new events per file key."""
        db, batch = self._sink.db, self._batch
        written: dict[str, int] = {}
        stmt = db.jdbc.createStatement()
        try:
            stmt.execute("SET @batch_started = NOW(6)")
            for f, kind, rows, payload in chunks:
                if f.key in done:
                    continue
                if kind != KIND_EVENT:
                    stmt.execute(sql.rejects_insert(batch, f, payload))
                    continue
                if self._format == EVENTS_TSV:
                    new = load_events(db, stmt, rows, payload)
                else:
                    stmt.execute(sql.EVENTS_INSERT.format(json=sql.text_literal(payload)))
                    new = stmt.getUpdateCount()
                written[f.key] = written.get(f.key, 0) + new
        except Py4JJavaError as e:
            self._sink.rollback_after(e, batch)
            raise SinkError(f"batch {batch.batch_id}: duplicate key in the events of a"
                            " streamed batch") from None
        except BaseException:
            db.rollback_quietly()  # the checks failed or the job is stopping
            raise
        finally:
            stmt.close()
        return written
