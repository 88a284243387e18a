"""The Spark steps on a local session: files grouped whole per task, lines in order,
invalid UTF-8 carried through Arrow, JSON chunks in line order."""

from __future__ import annotations

import json

from pipeline.schema import DEFAULT_EVENT_TYPES
from pipeline.transforms import classify_lines, events_as_tsv, raw_lines, to_payload_chunks

HEADER = "event_id,user_id,product_id,event_type,price,event_time"


def lines_df(spark, rows):
    """A batch as the file source gives it: one partition, files contiguous, in order."""
    return spark.createDataFrame(rows, "source_file string, value string").coalesce(1)


def test_classify_lines_numbers_each_file_from_one(spark):
    df = lines_df(spark, [("a", HEADER), ("a", "e1,u1,p1,view,1.00,2026-01-31T12:00:00Z"),
                          ("b", "e2,,p1,view,1.00,2026-01-31T12:00:00Z"),
                          ("b", "e3,u1,p1,view,1.00,2026-01-31T12:00:00Z")])
    got = [(r.source_file, r.line_number, r.kind, r.reason, r.event_id)
           for r in classify_lines(raw_lines(df), DEFAULT_EVENT_TYPES).collect()]
    assert got == [("a", 1, "header", None, None), ("a", 2, "event", None, "e1"),
                   ("b", 1, "rejected", "missing_user_id", None), ("b", 2, "event", None, "e3")]


def test_invalid_utf8_survives_the_trip_through_arrow(spark):
    bad = "e1,u\xff1,p1,view,1.00,2026-01-31T12:00:00Z".encode("latin-1").hex()
    df = spark.createDataFrame([("f", "x")], "source_file string, value string").selectExpr(
        "source_file", f"cast(unhex('{bad}') AS STRING) AS value")
    row = classify_lines(raw_lines(df), DEFAULT_EVENT_TYPES).collect()[0]
    assert (row.kind, row.reason) == ("rejected", "invalid_utf8")
    assert "\ufffd" in row.raw_line


def test_payload_chunks_keep_line_order_and_split_by_size(spark):
    rows = [("f", HEADER)] + [("f", f"e{i},u,p,view,1.00,2026-01-31T12:00:00Z")
                              for i in range(1, 6)]
    rows.insert(3, ("f", "bad,,p,view,1.00,2026-01-31T12:00:00Z"))
    chunks = to_payload_chunks(raw_lines(lines_df(spark, rows)), DEFAULT_EVENT_TYPES,
                               chunk_rows=2).collect()
    events = sorted((c for c in chunks if c.kind == "event"), key=lambda c: c.chunk)
    assert [c.rows for c in events] == [2, 2, 1]
    assert [row[0] for c in events for row in json.loads(c.payload)] == [
        "e1", "e2", "e3", "e4", "e5"]
    rejects = [c for c in chunks if c.kind == "rejected"]
    assert json.loads(rejects[0].payload)[0][:2] == [4, "missing_user_id"]


def test_events_as_tsv_escapes_what_load_data_reads_specially():
    plain = ["e1", "u1", "p1", "view", "1.00", "2026-01-01 00:00:00.000000"]
    assert events_as_tsv([plain]) == "\t".join(plain) + "\n"
    awkward = ["e2", "a\tb", "c\\d", "\\N", "x\ny\rz\0", "t"]
    assert events_as_tsv([plain, awkward]) == (
        "\t".join(plain) + "\n" + "e2\ta\\tb\tc\\\\d\t\\\\N\tx\\ny\\rz\\0\tt\n")
