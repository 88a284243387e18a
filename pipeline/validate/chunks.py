"""Checked rows as the sink sends them: per file, chunks of events and of rejects, bounded
in rows and in bytes so that no statement can outgrow the server's max_allowed_packet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

from pipeline.contract import EVENTS_JSON
from pipeline.contract import EVENTS_TSV
from pipeline.contract import KIND_EVENT
from pipeline.contract import KIND_REJECTED
from pipeline.validate.rules import Line
from pipeline.validate.rules import classify_file

EVENT_CHUNK_ROWS = 20000
# Default bound of one chunk's text in UTF-8 bytes; the sink passes one derived from the
# server's max_allowed_packet, so no statement it builds can be refused for its size.
CHUNK_MAX_BYTES = 2 * 1024 * 1024
# What LOAD DATA's default ESCAPED BY '\\' reads specially inside a tab-separated field.
_TSV_SPECIAL = re.compile(r"[\\\n\r\0]")
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r",
                              "\0": "\\0"})


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


def _as_json(rows: list) -> str:
    return json.dumps(rows, ensure_ascii=False)


def json_rows_text(rows: list[str]) -> str:
    """A JSON array of rows already written as JSON, one text each (as `json.dumps` joins)."""
    return "[" + ", ".join(rows) + "]"


def _json_chunks(rows: list, max_bytes: int, render: Callable[[list], str] = _as_json
                 ) -> Iterator[tuple[int, str]]:
    """(rows, JSON text) pieces of `rows`, each at most `max_bytes` in UTF-8; `render`
    writes a piece's rows as one JSON array.

    Rows are gathered by their size in characters; a chunk of many multi-byte characters
    can still come out larger in bytes, and is then halved.
    """
    text = render(rows)
    if len(rows) == 1 or len(text.encode("utf-8")) <= max_bytes:
        yield len(rows), text
        return
    half = len(rows) // 2
    yield from _json_chunks(rows[:half], max_bytes, render)
    yield from _json_chunks(rows[half:], max_bytes, render)


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
