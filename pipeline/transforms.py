"""Pure DataFrame -> DataFrame steps from raw CSV lines to what the sink writes.

The job never splits a file across tasks (`spark.sql.files.minPartitionNum=1`, large
`maxPartitionBytes`), so every task sees each of its files whole and in line order. One
`mapInArrow` pass can then number the lines, find the header and apply the row rules of
`pipeline.validation`, with no shuffle. Spark plans a micro-batch in milliseconds this way:
a plan with windows and aggregations cost over a second per batch to re-plan.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipeline.schema import EVENT_FIELDS
from pipeline.source_files import LINE_BAD_UTF8, LINE_MAX_BYTES, LINE_OK, LINE_TOO_LONG
from pipeline.validation import KIND_EVENT, KIND_REJECTED, Line, classify_file

EVENT_CHUNK_ROWS = 20000
# Default bound of one chunk's text in UTF-8 bytes; the sink passes one derived from the
# server's max_allowed_packet, so no statement it builds can be refused for its size.
CHUNK_MAX_BYTES = 2 * 1024 * 1024
_OUTPUT_BATCH_ROWS = 10000
EVENTS_JSON, EVENTS_TSV = "json", "tsv"
# What LOAD DATA's default ESCAPED BY '\\' reads specially inside a tab-separated field.
_TSV_SPECIAL = re.compile(r"[\\\n\r\0]")
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                              "\0": "\\0"})

CLASSIFIED_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("line_number", pa.int64()), ("kind", pa.string()),
     ("reason", pa.string()), ("detail", pa.string()), ("raw_line", pa.string())]
    + [(name, pa.string()) for name in EVENT_FIELDS])
CHUNK_SCHEMA = pa.schema([("source_file", pa.string()), ("kind", pa.string()),
                          ("chunk", pa.int64()), ("rows", pa.int64()),
                          ("payload", pa.string())])


def _ddl(schema: pa.Schema) -> str:
    types = {pa.string(): "STRING", pa.int64(): "BIGINT"}
    return ", ".join(f"{f.name} {types[f.type]}" for f in schema)


def raw_lines(batch: DataFrame) -> DataFrame:
    """(source_file, value, state): invalid UTF-8 replaced and too long lines cut, as the
    local reader (`pipeline.source_files`) does, with the line's state for the rules."""
    too_long = F.octet_length("value") > LINE_MAX_BYTES
    valid = F.make_valid_utf8("value")
    return batch.select(
        "source_file",
        F.when(too_long, F.substring(valid, 1, LINE_MAX_BYTES + 1)).otherwise(valid)
        .alias("value"),
        F.when(too_long, F.lit(LINE_TOO_LONG)).when(F.is_valid_utf8("value"), F.lit(LINE_OK))
        .otherwise(F.lit(LINE_BAD_UTF8)).alias("state"),
    )


def _files(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, Iterator]]:
    """(source_file, lines) for each file of a task, lines as (text, state)."""
    def rows():
        for batch in batches:
            yield from zip(batch.column("source_file").to_pylist(),
                           batch.column("value").to_pylist(),
                           batch.column("state").to_pylist())
    for path, group in itertools.groupby(rows(), key=itemgetter(0)):
        yield path, ((text, ok) for _, text, ok in group)


def classify_lines(lines: DataFrame, event_types: Sequence[str],
                   source_time_zone: str = "UTC") -> DataFrame:
    """Every line classified: columns of CLASSIFIED_SCHEMA; event fields set for events.

    Input: `raw_lines` output, each file whole within one partition and in line order.
    """
    types, tz = tuple(event_types), source_time_zone

    def classify(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out: list[tuple] = []
        for path, file_lines in _files(batches):
            for line in classify_file(file_lines, types, tz):
                out.append((path, line.line_number, line.kind, line.reason, line.detail,
                            line.raw_line, *(line.fields or (None,) * len(EVENT_FIELDS))))
                if len(out) >= _OUTPUT_BATCH_ROWS:
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(c, t.type) for c, t in zip(zip(*out), CLASSIFIED_SCHEMA)],
                        schema=CLASSIFIED_SCHEMA)
                    out = []
        if out:
            yield pa.RecordBatch.from_arrays(
                [pa.array(c, t.type) for c, t in zip(zip(*out), CLASSIFIED_SCHEMA)],
                schema=CLASSIFIED_SCHEMA)

    return lines.mapInArrow(classify, _ddl(CLASSIFIED_SCHEMA))


def _payload_row(line: Line) -> list:
    if line.kind == KIND_EVENT:
        return list(line.fields)
    return [line.line_number, line.reason, line.detail, line.raw_line]


def events_as_tsv(rows: Sequence[Sequence[str]]) -> str:
    """Event rows as LOAD DATA reads them by default: tab-separated, one row per line.

    Checked values are short and plain, so the whole chunk is scanned once for anything
    needing an escape; only a chunk that has some pays for escaping field by field.
    """
    text = "".join("\t".join(row) + "\n" for row in rows)
    width = len(rows[0]) if rows else 0
    if text.count("\t") == (width - 1) * len(rows) and not _TSV_SPECIAL.search(text):
        return text
    return "".join("\t".join(value.translate(_TSV_ESCAPES) for value in row) + "\n"
                   for row in rows)


def _row_chars(row: Sequence) -> int:
    """About a row's JSON size; the exact byte size is checked once per chunk."""
    return sum(len(str(value)) for value in row if value is not None) + 4 * len(row)


def _json_chunks(rows: list, max_bytes: int) -> Iterator[tuple[int, str]]:
    """(rows, JSON text) pieces of `rows`, each at most `max_bytes` in UTF-8.

    Rows are gathered by their size in characters; a chunk of many multi-byte characters
    can still come out larger in bytes, and is then halved.
    """
    text = json.dumps(rows, ensure_ascii=False)
    if len(rows) == 1 or len(text.encode("utf-8")) <= max_bytes:
        yield len(rows), text
        return
    half = len(rows) // 2
    yield from _json_chunks(rows[:half], max_bytes)
    yield from _json_chunks(rows[half:], max_bytes)


def file_chunks(file_lines: Iterable[tuple[str, int]], event_types: Sequence[str],
                source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                event_format: str = EVENTS_JSON, chunk_bytes: int = CHUNK_MAX_BYTES,
                ) -> Iterator[tuple[str, int, int, str]]:
    """One file's events and rejects: (kind, chunk, rows, payload), in file order.

    Events are `[event_id, user_id, product_id, event_type, price, event_time]` as a JSON
    array of arrays, or as `events_as_tsv` text for LOAD DATA (`event_format`). Rejects are
    JSON `[line_number, reason, detail, raw_line]`. At most `chunk_rows` rows and, for JSON,
    `chunk_bytes` bytes of UTF-8 per chunk (a single row is bounded by the line limit).
    Order matters: of two events with the same id, the first in the file is the one kept.
    """
    pending: dict[str, list] = {KIND_EVENT: [], KIND_REJECTED: []}
    sizes = {KIND_EVENT: 0, KIND_REJECTED: 0}
    counters = {KIND_EVENT: 0, KIND_REJECTED: 0}

    def flush(kind: str) -> Iterator[tuple[str, int, int, str]]:
        rows, pending[kind], sizes[kind] = pending[kind], [], 0
        if kind == KIND_EVENT and event_format == EVENTS_TSV:
            pieces: Iterable[tuple[int, str]] = [(len(rows), events_as_tsv(rows))]
        else:
            pieces = _json_chunks(rows, chunk_bytes)
        for count, text in pieces:
            counters[kind] += 1
            yield kind, counters[kind] - 1, count, text

    for line in classify_file(file_lines, event_types, source_time_zone):
        if line.kind in pending:
            row = _payload_row(line)
            pending[line.kind].append(row)
            sizes[line.kind] += _row_chars(row)
            if len(pending[line.kind]) >= chunk_rows or sizes[line.kind] >= chunk_bytes:
                yield from flush(line.kind)
    for kind, rows in pending.items():
        if rows:
            yield from flush(kind)


def to_payload_chunks(lines: DataFrame, event_types: Sequence[str],
                      source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                      chunk_bytes: int = CHUNK_MAX_BYTES) -> DataFrame:
    """Each file's `file_chunks`, as rows of CHUNK_SCHEMA. Files with no rows give no chunk."""
    types, tz = tuple(event_types), source_time_zone

    def chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for path, file_lines in _files(batches):
            for kind, chunk, rows, payload in file_chunks(file_lines, types, tz, chunk_rows,
                                                          chunk_bytes=chunk_bytes):
                yield pa.RecordBatch.from_pydict(
                    {"source_file": [path], "kind": [kind], "chunk": [chunk], "rows": [rows],
                     "payload": [payload]}, schema=CHUNK_SCHEMA)

    return lines.mapInArrow(chunks, _ddl(CHUNK_SCHEMA))
