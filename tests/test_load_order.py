"""Events reach LOAD DATA in primary-key order, in bounded units, and nothing about what is
stored changes: the same rows, the first of two same-id events kept, every warning read."""

from __future__ import annotations

import random

import pytest

from pipeline.contract import EVENTS_TSV
from pipeline.contract import KIND_EVENT
from pipeline.contract import KIND_REJECTED
from pipeline.errors import BatchRejected
from pipeline.write.streamed import StagedTsv
from pipeline.write.streamed import in_key_order
from pipeline.write.streamed import load_events

SEED = 20261206


def _tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def _event(event_id: str, user: str) -> list[str]:
    return [event_id, user, "prod_1", "view", "1.50", "2026-01-02 03:04:05.000000"]


def _chunks(rng: random.Random) -> tuple[list[tuple[str, str, int, str]], dict]:
    """Two files' chunks in file order, with repeated ids and rejects between them; per
    file, the events in line order (what a loader keeping first occurrences stores)."""
    chunks, in_order = [], {}
    for name in ("a.csv", "b.csv"):
        rows = []
        for line in range(rng.randint(40, 90)):
            event_id = f"id-{rng.randint(0, 60):03d}"  # about a third repeat an earlier id
            rows.append(_event(event_id, f"{name}:{line}"))
        in_order[name] = rows
        start = 0
        while start < len(rows):
            size = rng.randint(1, 12)
            part = rows[start:start + size]
            chunks.append((name, KIND_EVENT, len(part), _tsv(part)))
            if rng.random() < 0.4:
                chunks.append((name, KIND_REJECTED, 1, f'[[{start}, "bad_price", "x", "y"]]'))
            start += size
    return chunks, in_order


def test_units_are_sorted_bounded_per_file_and_keep_the_first_of_each_id():
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    for _ in range(50):
        chunks, in_order = _chunks(rng)
        unit_rows = rng.randint(5, 40)
        out = list(in_key_order(chunks, unit_rows, first_unit_rows=rng.randint(1, unit_rows)))

        # Rejects pass unchanged and in order; events of one file stay in that file.
        assert [c for c in out if c[1] != KIND_EVENT] == [c for c in chunks
                                                          if c[1] != KIND_EVENT]
        for name, rows in in_order.items():
            units = [c for c in out if c[0] == name and c[1] == KIND_EVENT]
            loaded: dict[str, str] = {}
            for _, _, count, text in units:
                lines = [line.split("\t") for line in text[:-1].split("\n")]
                assert count == len(lines)
                assert count < unit_rows + 12  # one chunk past the bound at most
                ids = [fields[0] for fields in lines]
                assert ids == sorted(ids)
                for fields in lines:
                    loaded.setdefault(fields[0], fields[1])
            first = {}
            for row in rows:
                first.setdefault(row[0], row[1])
            # The same rows, and of two with one id the earlier line is met first.
            assert loaded == first
            assert sorted(line for c in units for line in c[3][:-1].split("\n")) \
                == sorted("\t".join(r) for r in rows)


def _events(database) -> dict[str, str]:
    return dict(database.query("SELECT event_id, user_id FROM events"))


def test_a_unit_skipping_more_rows_than_the_server_lists_is_loaded_again_in_halves(
        sink, database):
    """The server lists at most max_error_count warnings per statement: a unit with more
    duplicates than that goes back to a savepoint and in again in halves, every warning
    still read. Here the limit is 5, so 30 rows with 12 known ids take the long way."""
    db = sink.db
    assert sink.bulk_load, "the test server must allow LOAD DATA LOCAL"
    known = [_event(f"id-{i:02d}", "first") for i in range(12)]
    stmt = db.jdbc.createStatement()
    try:
        assert load_events(db, stmt, len(known), _tsv(known), max_listed=5) == 12
        again = known + [_event(f"id-{i:02d}", "new") for i in range(12, 30)]
        assert load_events(db, stmt, len(again), _tsv(again), max_listed=5) == 18
        db.jdbc.commit()
    finally:
        stmt.close()
    stored = _events(database)
    assert len(stored) == 30
    assert all(stored[f"id-{i:02d}"] == "first" for i in range(12))


def test_a_value_the_table_would_cut_refuses_the_unit_also_past_the_listed_limit(
        sink, database):
    db = sink.db
    rows = [_event(f"id-{i:02d}", "u") for i in range(20)]
    rows[17][1] = "x" * 200  # user_id is VARCHAR(64): LOCAL would store it cut
    stmt = db.jdbc.createStatement()
    try:
        with pytest.raises(BatchRejected, match="not all"):
            load_events(db, stmt, len(rows), _tsv(rows), max_listed=5)
    finally:
        db.rollback_quietly()
        stmt.close()
    assert _events(database) == {}


def test_staged_units_survive_a_connection_lost_mid_stream(sink, database):
    """Units staged in the JVM are used once: the retry after a lost connection copies the
    kept text again, and every row is stored once."""
    from tests.test_reread_stream import FILES
    from tests.test_reread_stream import chunks_of_files
    from tests.test_reread_stream import job_connections
    from tests.test_reread_stream import new_batch

    def killing(chunks):
        for n, chunk in enumerate(chunks):
            if n == 2:  # the connection dies mid-transaction, after a unit was loaded
                for connection in job_connections(database):
                    database.query(f"KILL CONNECTION {connection}")
            yield chunk

    staged = []

    def noted(chunks):
        for chunk in chunks:
            if isinstance(chunk[3], StagedTsv) and chunk[3].staged is not None:
                staged.append(chunk[3])
            yield chunk

    assert sink.bulk_load, "the test server must allow LOAD DATA LOCAL"
    units = sink.staged_for_load(in_key_order(chunks_of_files(EVENTS_TSV), first_unit_rows=2))
    result = sink.commit_streamed(new_batch(), killing(noted(units)), EVENTS_TSV)
    assert staged and all(unit.staged is None for unit in staged)  # each used, once
    assert (result.attempts, result.replayed) == (2, False)
    ids = [r[0] for r in database.query("SELECT event_id FROM events")]
    assert sorted(ids) == sorted(i for ids in FILES.values() for i in ids)
    assert database.query("SELECT count(*) FROM events_rejected")[0][0] == 3
