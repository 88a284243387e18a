"""The sink against the real database through the real JDBC driver: one transaction per
batch, replays recognised, files never loaded twice, counts that add up."""

from __future__ import annotations

import json
import uuid
from datetime import UTC
from datetime import datetime

import pytest

from pipeline.contract import BatchPayload
from pipeline.contract import FilePayload
from pipeline.errors import BatchRejected

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def chunk(rows: list[list]) -> str:
    return json.dumps(rows)


def event(event_id: str, price: str = "1.50") -> list:
    return [event_id, "u1", "p1", "view", price, "2026-01-31 12:00:00.000000"]


def file_payload(name: str, events: list[list], rejects: list[list] = ()) -> FilePayload:
    return FilePayload(
        source_file=f"file:/data/{name}",
        modified_at=datetime(2026, 1, 31, tzinfo=UTC),
        rows_valid=len(events), rows_rejected=len(rejects),
        event_chunks=[chunk(events)] if events else [],
        reject_chunks=[chunk(list(rejects))] if rejects else [],
    )


def batch(query_id: str, batch_id: int, *files: FilePayload) -> BatchPayload:
    return BatchPayload(query_id, batch_id, list(files), datetime.now(UTC), 5)


def test_batch_commits_rows_ledger_and_file_accounting(sink, database):
    qid = str(uuid.uuid4())
    reject = [3, "missing_user_id", "user_id is empty", "e3,,p1,view,1,2026-01-31T12:00:00Z"]
    result = sink.commit_batch(batch(qid, 0, file_payload(
        "events_a.csv", [event("e1"), event("e2", "2.00"), event("e1", "9.99")], [reject])))
    assert (result.replayed, result.rows_written, result.rows_duplicate) == (False, 2, 1)
    assert database.query("SELECT event_id, price FROM events ORDER BY event_id") == [
        ("e1", pytest.approx(1.50)), ("e2", pytest.approx(2.00))]  # first of two e1 kept
    assert database.query("SELECT line_number, reason, raw_line FROM events_rejected") == [
        (3, "missing_user_id", reject[3])]
    assert database.query("SELECT rows_read, rows_written, rows_rejected, rows_duplicate"
                          " FROM ingest_files") == [(4, 2, 1, 1)]
    assert database.query("SELECT batch_id, file_count, rows_written, rows_duplicate"
                          " FROM ingest_batches WHERE query_id = %s", (qid,)) == [(0, 1, 2, 1)]


def test_replayed_batch_is_recognised_and_changes_nothing(sink, database):
    qid = str(uuid.uuid4())
    payload = batch(qid, 7, file_payload("events_a.csv", [event("e1"), event("e2")]))
    assert not sink.commit_batch(payload).replayed
    before = database.query("SELECT * FROM events ORDER BY event_id")
    again = sink.commit_batch(payload)
    assert again.replayed
    assert database.query("SELECT * FROM events ORDER BY event_id") == before
    assert database.query("SELECT count(*) FROM ingest_batches") == [(1,)]
    assert database.query("SELECT count(*) FROM ingest_files") == [(1,)]


def test_new_checkpoint_skips_files_already_loaded(sink, database):
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    sink.commit_batch(batch(old, 0, file_payload("events_a.csv", [event("e1")])))
    # Checkpoint wiped: new query id, batch ids from 0 again, the old file listed again.
    result = sink.commit_batch(batch(new, 0, file_payload("events_a.csv", [event("e1")]),
                                     file_payload("events_b.csv", [event("e2")])))
    assert (result.replayed, result.files_skipped, result.rows_written) == (False, 1, 1)
    assert sorted(database.query("SELECT query_id, batch_id, file_count, files_skipped"
                                 " FROM ingest_batches")) == sorted([(old, 0, 1, 0),
                                                                     (new, 0, 1, 1)])
    assert database.query("SELECT count(*) FROM ingest_files") == [(2,)]


def test_event_already_in_database_counts_as_duplicate(sink, database):
    sink.commit_batch(batch(str(uuid.uuid4()), 0, file_payload("events_a.csv", [event("e1")])))
    result = sink.commit_batch(batch(str(uuid.uuid4()), 0,
                                     file_payload("events_b.csv", [event("e1", "5.00")])))
    assert (result.rows_written, result.rows_duplicate) == (0, 1)
    assert database.query("SELECT price FROM events") == [(pytest.approx(1.50),)]


def test_failed_batch_leaves_nothing_behind(sink, database):
    bad = file_payload("events_a.csv", [event("e1"), event("e2", "not-a-price")])
    with pytest.raises(BatchRejected, match="rejected the data of batch"):
        sink.commit_batch(batch(str(uuid.uuid4()), 0, bad))
    for table in ("events", "ingest_files", "ingest_batches", "events_rejected"):
        assert database.query(f"SELECT count(*) FROM {table}") == [(0,)], table


def test_text_with_quotes_and_backslashes_arrives_unchanged(sink, database):
    nasty = "x'); DROP TABLE events; -- \\ \" é 😀"
    reject = [2, "bad_price", "price is bad", nasty]
    sink.commit_batch(batch(str(uuid.uuid4()), 0, file_payload("we'ird \\ name.csv", [],
                                                              [reject])))
    assert database.query("SELECT raw_line, source_file FROM events_rejected") == [
        (nasty, "file:/data/we'ird \\ name.csv")]
