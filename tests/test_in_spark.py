"""The rules inside Spark tasks on a local session: files grouped whole per task, lines in
order and numbered from one per file, invalid UTF-8 carried through Arrow, chunks in line
order; and the TSV that LOAD DATA reads."""

from __future__ import annotations

import json

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.read.spark_source import raw_lines
from pipeline.validate.chunks import events_as_tsv
from pipeline.validate.in_spark import refusal
from pipeline.validate.in_spark import to_payload_chunks

HEADER = "event_id,user_id,product_id,event_type,price,event_time"


def lines_df(spark, rows):
    """A batch as the file source gives it: one partition, files contiguous, in order."""
    return spark.createDataFrame(rows, "source_file string, value string").coalesce(1)


def test_each_file_is_numbered_from_one(spark):
    df = lines_df(spark, [("a", HEADER), ("a", "e1,u1,p1,view,1.00,2026-01-31T12:00:00Z"),
                          ("b", "e2,,p1,view,1.00,2026-01-31T12:00:00Z"),
                          ("b", "e3,u1,p1,view,1.00,2026-01-31T12:00:00Z")])
    chunks = {(c.source_file, c.kind): json.loads(c.payload)
              for c in to_payload_chunks(raw_lines(df), DEFAULT_EVENT_TYPES).collect()}
    assert [row[0] for row in chunks[("a", "event")]] == ["e1"]
    assert [row[0] for row in chunks[("b", "event")]] == ["e3"]
    assert [row[:2] for row in chunks[("b", "rejected")]] == [[1, "missing_user_id"]]
    assert ("a", "rejected") not in chunks


def test_invalid_utf8_survives_the_trip_through_arrow(spark):
    bad = "e1,u\xff1,p1,view,1.00,2026-01-31T12:00:00Z".encode("latin-1").hex()
    df = spark.createDataFrame([("f", "x")], "source_file string, value string").selectExpr(
        "source_file", f"cast(unhex('{bad}') AS STRING) AS value")
    (chunk,) = to_payload_chunks(raw_lines(df), DEFAULT_EVENT_TYPES).collect()
    (line_number, reason, _detail, raw), = json.loads(chunk.payload)
    assert (chunk.kind, line_number, reason) == ("rejected", 1, "invalid_utf8")
    assert "\ufffd" in raw


def test_a_line_too_long_is_cut_and_flagged_as_the_local_reader_does(spark):
    df = lines_df(spark, [("f", "x" * 20000), ("f", "e1,u1,p1,view,1.00,2026-01-31T12:00:00Z")])
    chunks = {c.kind: json.loads(c.payload)
              for c in to_payload_chunks(raw_lines(df), DEFAULT_EVENT_TYPES).collect()}
    assert [(r[0], r[1], len(r[3])) for r in chunks["rejected"]] == [(1, "line_too_long", 1000)]
    assert [r[0] for r in chunks["event"]] == ["e1"]


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


def test_packed_tsv_chunks_unpack_to_what_the_driver_makes_of_the_same_lines(spark):
    """The executors' route: TSV made in the task, deflated for the trip, the same text
    as the per-line reference rules give for the file, awkward values and rejects
    included."""
    from pipeline.contract import EVENTS_TSV
    from pipeline.contract import LINE_OK
    from pipeline.validate.chunks import file_chunks
    from pipeline.validate.in_spark import unpack_payload

    texts = [HEADER] + [f"e{i},u\\{i}\t,p,view,1.00,2026-01-31T12:00:00Z" for i in range(7)]
    texts.insert(4, "bad,,p,view,1.00,2026-01-31T12:00:00Z")
    packed = to_payload_chunks(raw_lines(lines_df(spark, [("f", t) for t in texts])),
                               DEFAULT_EVENT_TYPES, chunk_rows=3, event_format=EVENTS_TSV,
                               packed=True).collect()
    got = sorted((c.kind, c.chunk, c.rows, unpack_payload(c.payload)) for c in packed)
    want = sorted(file_chunks([(t, LINE_OK) for t in texts], DEFAULT_EVENT_TYPES,
                              chunk_rows=3, event_format=EVENTS_TSV))
    assert got == want
    assert any("\\\\" in text for kind, _, _, text in got if kind == "event")


def test_headers_by_name_refusals_and_impossible_offsets_in_tasks(spark):
    """Issue 22 inside Spark tasks: the header after a blank line or `sep=,` maps by name, a
    header naming only some columns refuses its file (one `refused` chunk, the other files
    go on), and an offset no clock has costs its row only."""
    df = lines_df(spark, [
        ("a", ""), ("a", "sep=,"), ("a", "user_id,event_id,product_id,event_type,price,event_time"),
        ("a", "u1,e1,p1,view,1.00,2026-01-31T12:00:00+24:00"),
        ("a", "u1,e2,p1,view,1.00,2026-01-31T12:00:00Z"),
        ("b", "event_id,user,product_id,event_type,price,event_time"),
        ("b", "e3,u1,p1,view,1.00,2026-01-31T12:00:00Z"),
        ("c", "e4,u1,p1,view,1.00,2026-01-31T12:00:00-24:00")])
    chunks = {(c.source_file, c.kind): c.payload
              for c in to_payload_chunks(raw_lines(df), DEFAULT_EVENT_TYPES).collect()}
    assert set(chunks) == {("a", "event"), ("a", "rejected"), ("b", "refused"),
                           ("c", "rejected")}
    assert [row[:2] for row in json.loads(chunks[("a", "event")])] == [["e2", "u1"]]
    assert [row[:2] for row in json.loads(chunks[("a", "rejected")])] == [
        [4, "bad_event_time"]]
    assert [row[:2] for row in json.loads(chunks[("c", "rejected")])] == [
        [1, "bad_event_time"]]
    refused = refusal(chunks[("b", "refused")])
    assert refused.reason == "bad_header" and "has no column user_id" in refused.detail
