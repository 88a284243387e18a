"""A batch streamed from executors keeps nothing on the driver: after a transient database
error the sink reads the chunks again (Spark reruns the tasks) into a new transaction, and
every row is stored once, with file counts that are not doubled by the second read."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from datetime import UTC
from datetime import datetime

from pipeline.contract import EVENT_FIELDS
from pipeline.contract import EVENTS_JSON
from pipeline.contract import LINE_OK
from pipeline.contract import BatchPayload
from pipeline.contract import FilePayload
from pipeline.validate.chunks import file_chunks

FILES = {f"file:/data/events_{n}.csv": [f"e{n}-{i}" for i in range(7)] for n in range(3)}


def chunks_of_files(event_format: str = EVENTS_JSON):
    """Real checked chunks, three rows each, plus one rejected row per file."""
    for name, ids in FILES.items():
        lines = [(",".join(EVENT_FIELDS), LINE_OK)]
        lines += [(f"{i},u1,p1,view,1.50,2026-01-31T12:00:00Z", LINE_OK) for i in ids]
        lines.append(("broken,line", LINE_OK))
        for kind, _chunk, rows, payload in file_chunks(lines, ("view",), chunk_rows=3,
                                                        event_format=event_format):
            yield name, kind, rows, payload


def new_batch(batch_id: int = 0) -> BatchPayload:
    return BatchPayload(str(uuid.uuid4()), batch_id,
                        [FilePayload(name, datetime(2026, 1, 31, tzinfo=UTC)) for name in FILES],
                        datetime.now(UTC), 0)


def job_connections(database) -> list[int]:
    return [r[0] for r in database.query(
        "SELECT id FROM information_schema.processlist WHERE user = %s", (database.user,))]


def test_a_transient_error_mid_stream_reads_the_chunks_again(sink, database):
    opened = []

    @contextmanager
    def open_chunks():
        opened.append(1)

        def read():
            for n, chunk in enumerate(chunks_of_files()):
                if len(opened) == 1 and n == 2:  # the connection dies mid-transaction
                    for connection in job_connections(database):
                        database.query(f"KILL CONNECTION {connection}")
                yield chunk
        yield read()

    batch = new_batch()
    result = sink.commit_streamed_reread(batch, open_chunks, EVENTS_JSON)
    assert (len(opened), result.attempts, result.replayed) == (2, 2, False)
    ids = [r[0] for r in database.query("SELECT event_id FROM events")]
    expected = [i for ids in FILES.values() for i in ids]
    assert sorted(ids) == sorted(expected)
    counted = database.query(
        "SELECT source_file, rows_read, rows_written, rows_rejected FROM ingest_files")
    assert sorted(counted) == sorted((name, 8, 7, 1) for name in FILES)
    assert [(f.rows_valid, f.rows_rejected) for f in batch.files] == [(7, 1)] * 3
    assert database.query("SELECT count(*) FROM events_rejected")[0][0] == 3


def test_a_replayed_batch_is_not_read_again(sink, database):
    opened = []

    @contextmanager
    def open_chunks():
        opened.append(1)
        yield chunks_of_files()

    first = new_batch()
    sink.commit_streamed_reread(first, open_chunks, EVENTS_JSON)
    again = BatchPayload(first.query_id, first.batch_id,
                         [FilePayload(f.source_file, f.modified_at) for f in first.files],
                         datetime.now(UTC), 0)
    result = sink.commit_streamed_reread(again, open_chunks, EVENTS_JSON)
    assert result.replayed and len(opened) == 1
    assert database.query("SELECT count(*) FROM events")[0][0] == 21
