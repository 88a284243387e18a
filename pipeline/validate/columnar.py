"""The row rules for a block of lines at once, on Arrow arrays (`pyarrow.compute`).

`file_chunks` here gives exactly what `pipeline.validate.chunks.file_chunks` gives (same
chunks, byte for byte), several times faster: the per-line rules in `rules.py` stay the
reference, and this module must agree with them (tests/test_columnar.py compares the two on
the bad-input corpus and on a randomly damaged one).

A file is read in blocks of BLOCK_LINES lines. In each block the common line, a *plain* one,
is judged by array operations over the whole block: valid UTF-8, not too long, no double
quote, no control character but tab, and no whitespace but space and tab (Python's `strip`
and Arrow's trim agree on those). The first line (BOM, header) and every line that is not
plain go one by one through the reference rules (`FileRules.classify`), and so does the
quoted record such a line may start, which can take plain lines after it. Within a plain
line, Python still does two things one row at a time: an `event_time` not in the plain UTC
form (an offset, a local time zone, other digits) is parsed by the reference, and a rejected
row gets its detail from the reference, so that it reads the same.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract import EVENT_FIELDS
from pipeline.contract import EVENTS_JSON
from pipeline.contract import EVENTS_TSV
from pipeline.contract import KIND_EVENT
from pipeline.contract import KIND_REJECTED
from pipeline.contract import LINE_OK
from pipeline.contract import LINE_STATE_MASK
from pipeline.contract import MAX_LENGTHS
from pipeline.contract import PRICE_PATTERN
from pipeline.validate.chunks import _TSV_ESCAPES
from pipeline.validate.chunks import CHUNK_MAX_BYTES
from pipeline.validate.chunks import EVENT_CHUNK_ROWS
from pipeline.validate.chunks import _json_chunks
from pipeline.validate.chunks import _payload_row
from pipeline.validate.chunks import _row_chars
from pipeline.validate.chunks import json_rows_text
from pipeline.validate.rules import FileRules
from pipeline.validate.rules import Line
from pipeline.validate.rules import check_event
from pipeline.validate.rules import parse_event_time
from pipeline.validate.rules import rejected_line
from pipeline.validate.rules import wrong_column_count

# Lines per block: big enough that array operations pay, small enough to bound memory.
BLOCK_LINES = 64 * 1024
# The whitespace a plain line may hold, trimmed by Arrow as Python's strip() trims it.
_TRIMMED = " \t"
# Python strips other whitespace too, and Arrow's trim would not: such lines go one by one.
_OTHER_SPACE = "".join(chr(c) for c in range(sys.maxunicode + 1)
                       if chr(c).isspace() and chr(c) not in _TRIMMED)
_NOT_PLAIN = "[\"\\x00" + "".join(f"\\x{{{ord(c):x}}}" for c in _OTHER_SPACE) + "]"
_NEGATIVE_PRICE = "^-" + PRICE_PATTERN[1:]
# The generator's form: UTC, no offset or 'Z'. Its text is the stored value, rearranged.
_UTC_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"
_UTC_TIME_NO_ZONE = _UTC_TIME[:-2] + "Z?$"
_ID_LIMITS = tuple((EVENT_FIELDS.index(n), limit) for n, limit in MAX_LENGTHS.items()
                   if n != "event_type")
# Reasons of the event checks, in the order check_event applies them.
_EVENT_REASONS = ("missing_event_id", "missing_user_id", "missing_product_id",
                  "field_too_long", "unknown_event_type", "negative_price", "bad_price",
                  "bad_event_time")
_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


class _BlockEnd(Exception):
    """A quoted record needs lines past the block: it is judged again with the next one."""


class _BlockLines:
    """A block's lines as the reference rules read them (`next`, `give_back`)."""

    def __init__(self, texts: pa.Array, states: np.ndarray, first_line: int, last: bool):
        self.texts, self.states, self.first_line, self.last = texts, states, first_line, last
        self.pos = 0

    def next(self) -> tuple[int, str, int] | None:
        if self.pos >= len(self.states):
            if self.last:
                return None
            raise _BlockEnd
        i = self.pos
        self.pos += 1
        return self.first_line + i, self.texts[i].as_py(), int(self.states[i])

    def give_back(self, taken: list) -> None:
        self.pos -= len(taken)  # always the lines read last, in order


def _bools(array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


class _Checked:
    """One block's results: events as arrays, rejects as payload rows, both with numbers."""

    def __init__(self):
        self.event_numbers: list[np.ndarray] = []
        self.event_values: list[list[pa.Array]] = []
        self.event_escapes: list[np.ndarray] = []
        self.rejects: list[tuple[int, list]] = []

    def add_events(self, numbers: np.ndarray, values: list[pa.Array],
                   escape: np.ndarray) -> None:
        """Events in file order; `escape` marks those whose values Python must write."""
        if len(numbers):
            self.event_numbers.append(numbers)
            self.event_values.append(values)
            self.event_escapes.append(escape)

    def add_line(self, line: Line) -> None:
        if line.kind == KIND_EVENT:
            self.add_events(np.array([line.line_number]),
                            [pa.array([v], pa.string()) for v in line.fields],
                            np.ones(1, dtype=bool))
        elif line.kind == KIND_REJECTED:
            self.rejects.append((line.line_number, _payload_row(line)))

    def merge(self, other: _Checked) -> None:
        self.event_numbers += other.event_numbers
        self.event_values += other.event_values
        self.event_escapes += other.event_escapes
        self.rejects += other.rejects

    def events(self) -> tuple[np.ndarray, list[pa.Array], np.ndarray]:
        """Line numbers, the six value columns and the escape marks of the block's events,
        in file order."""
        if not self.event_numbers:
            return (np.zeros(0, np.int64), [pa.array([], pa.string())] * len(EVENT_FIELDS),
                    np.zeros(0, dtype=bool))
        numbers = np.concatenate(self.event_numbers)
        escape = np.concatenate(self.event_escapes)
        columns = [pa.concat_arrays([v[i] for v in self.event_values])
                   for i in range(len(EVENT_FIELDS))]
        if len(self.event_numbers) > 1:
            order = np.argsort(numbers, kind="stable")
            numbers, escape = numbers[order], escape[order]
            columns = [c.take(pa.array(order)) for c in columns]
        return numbers, columns, escape


def _rows_with(texts: pa.Array, test) -> np.ndarray:
    """Which strings of `texts` hold a byte for which `test` (on a numpy array) is true.

    One pass over the array's bytes: several times faster than a string kernel per row.
    """
    offsets, data = _buffers(texts)
    hits = np.flatnonzero(test(data[offsets[0]:offsets[-1]])) + offsets[0]
    rows = np.zeros(len(texts), dtype=bool)
    rows[np.searchsorted(offsets, hits, side="right") - 1] = True
    return rows


def _plain_mask(texts: pa.Array, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which lines are plain, and which of them hold a tab or a backslash (characters that
    LOAD DATA and JSON text escape, so their rows are written by Python)."""
    # A quote or any control character but tab; other whitespace is looked for only in the
    # few lines that are not ASCII.
    odd = _rows_with(texts, lambda b: ((b < 0x20) ^ (b == 0x09)) | (b == 0x22))
    wide = np.flatnonzero(_rows_with(texts, lambda b: b >= 0x80) & ~odd)
    if len(wide):
        odd[wide] = _bools(pc.match_substring_regex(texts.take(pa.array(wide)), _NOT_PLAIN))
    plain = ((states & LINE_STATE_MASK) == LINE_OK) & ~odd
    return plain, _rows_with(texts, lambda b: (b == 0x5C) | (b == 0x09))


def _judge_block(texts: pa.Array, states: np.ndarray, first_line: int, last: bool,
                 rules: FileRules) -> tuple[_Checked, int]:
    """The block's records and how many of its lines were judged: the rest, from a quoted
    record that runs past the block, is carried to the next block."""
    checked = _Checked()
    lines = _BlockLines(texts, states, first_line, last)
    judged = np.zeros(len(states), dtype=bool)

    def one_by_one(index: int) -> None:
        lines.pos = index
        checked.add_line(rules.classify(lines.next(), lines))
        judged[index:lines.pos] = True

    # Until the header is found (after blank lines or `sep=,`), lines go one by one: it
    # decides how every other line is read. The rules carry it to the file's next blocks.
    while not rules.header_done and lines.pos < len(states):
        start = lines.pos
        try:
            one_by_one(start)
        except _BlockEnd:
            return checked, start
    plain, escape = _plain_mask(texts, states)
    end = len(states)
    for index in np.flatnonzero(~plain):
        if index >= lines.pos:
            try:
                one_by_one(int(index))
            except _BlockEnd:
                end = int(index)
                break
    fast = np.flatnonzero(plain[:end] & ~judged[:end])
    if len(fast):
        try:
            plain_checked = _Checked()
            _judge_plain(texts.take(pa.array(fast)), fast + first_line, escape[fast], rules,
                         plain_checked)
        except Exception:  # noqa: BLE001 - a value the array checks did not foresee
            # The reference rules judge these lines again, one by one: whatever failed
            # costs its own row (`check_failed` at worst), never the block or the file.
            plain_checked = _Checked()
            for index in fast:
                lines.pos = int(index)
                plain_checked.add_line(rules.classify(lines.next(), lines))
        checked.merge(plain_checked)
    return checked, end


def _judge_plain(texts: pa.Array, numbers: np.ndarray, escape: np.ndarray, rules: FileRules,
                 checked: _Checked) -> None:
    """Plain lines (see the module's doc), all at once."""
    # Plain lines hold no whitespace but space and tab: ASCII trimming is Python's strip().
    not_blank = _ints(pc.binary_length(pc.ascii_trim(texts, _TRIMMED))) > 0
    texts, numbers, escape = texts.filter(pa.array(not_blank)), numbers[not_blank], \
        escape[not_blank]
    split = pc.split_pattern(texts, ",")
    columns = _ints(pc.list_value_length(split))
    width = rules.width
    wrong = np.flatnonzero(columns != width)
    for index, text in zip(wrong, texts.take(pa.array(wrong)).to_pylist(), strict=True):
        line = wrong_column_count(int(numbers[index]), text, int(columns[index]), width)
        checked.rejects.append((line.line_number, _payload_row(line)))
    if len(wrong):
        right = columns == width
        texts, numbers, escape = texts.filter(pa.array(right)), numbers[right], escape[right]
        split = split.filter(pa.array(right))
    if not len(numbers):
        return
    flat = pc.list_flatten(split)
    fields = [flat.take(pa.array(np.arange(i, len(flat), width))) for i in range(width)]
    values = [pc.ascii_trim(fields[i], _TRIMMED) for i in rules.order]
    reasons, times = _event_reasons(values, rules)
    good = reasons < 0
    keep = pa.array(good)
    checked.add_events(numbers[good], [*(v.filter(keep) for v in values[:-1]),
                                       times.filter(keep)], escape[good])
    bad = np.flatnonzero(~good)
    if not len(bad):
        return
    taken = pa.array(bad)
    rows = zip(*(v.take(taken).to_pylist() for v in values), strict=True)
    for index, text, row in zip(bad, texts.take(taken).to_pylist(), rows, strict=True):
        # The reason is this module's; the detail the reference's, for the same values.
        detail = check_event([v or None for v in row], rules.types, rules.source_time_zone)[1]
        line = rejected_line(int(numbers[index]), text, _EVENT_REASONS[reasons[index]], detail)
        checked.rejects.append((line.line_number, _payload_row(line)))


def _event_reasons(values: list[pa.Array], rules: FileRules) -> tuple[np.ndarray, pa.Array]:
    """Per row the index in _EVENT_REASONS of the first check it fails (-1: none), and the
    stored event_time of the rows that pass."""
    event_id, user_id, product_id, event_type, price, event_time = values
    lengths = [_ints(pc.utf8_length(v)) for v in values]
    types = pa.array(sorted(rules.types), pa.string())
    negative = _bools(pc.match_substring_regex(price, _NEGATIVE_PRICE))
    failed = [
        lengths[0] == 0,
        lengths[1] == 0,
        lengths[2] == 0,
        np.any([lengths[i] > limit for i, limit in _ID_LIMITS], axis=0),
        (lengths[3] == 0) | ~_bools(pc.is_in(event_type, value_set=types)),
    ]
    bad_price = ~_bools(pc.match_substring_regex(price, PRICE_PATTERN))
    failed += [bad_price & negative, bad_price & ~negative]
    reasons = np.full(len(event_id), -1, dtype=np.int64)
    for code in reversed(range(len(failed))):
        reasons[failed[code]] = code
    times = _event_times(event_time, reasons < 0, rules.source_time_zone)
    reasons[(reasons < 0) & ~_bools(pc.is_valid(times))] = _EVENT_REASONS.index("bad_event_time")
    return reasons, times


def _event_times(texts: pa.Array, wanted: np.ndarray, source_time_zone: str) -> pa.Array:
    """The stored (UTC) form of each wanted event_time; null where it is no timestamp.

    The plain UTC form is checked and rearranged as arrays; any other goes through the
    reference `parse_event_time`, one value at a time.
    """
    pattern = _UTC_TIME_NO_ZONE if source_time_zone.upper() == "UTC" else _UTC_TIME
    plain = _bools(pc.match_substring_regex(texts, pattern)) & wanted
    # Rows not in the plain form get a stand-in of the same shape, so that every row can be
    # read at the same byte positions; they are set to null (or parsed) below.
    filled = pc.if_else(pa.array(plain), texts, "0000-00-00T00:00:00")
    stored = pc.if_else(pa.array(plain & _plain_time_valid(filled)), _plain_time_stored(filled),
                        pa.scalar(None, pa.string()))
    others = np.flatnonzero(wanted & ~plain)
    if not len(others):
        return stored
    values = stored.to_pylist()
    for index in others:
        values[index] = parse_event_time(texts[int(index)].as_py(), source_time_zone)
    return pa.array(values, pa.string())


def _buffers(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets of a string array (len + 1, absolute) and its whole data buffer."""
    first = texts.offset
    offsets = np.frombuffer(texts.buffers()[1], np.int32)[first:first + len(texts) + 1]
    return offsets, np.frombuffer(texts.buffers()[2] or b"", np.uint8)


def _plain_time_digits(texts: pa.Array) -> list[np.ndarray]:
    """Year, month, day, hour, minute, second of times in the plain form (fixed positions)."""
    offsets, data = _buffers(texts)
    digits = data[offsets[:-1, None] + np.arange(19)].astype(np.int64) - ord("0")

    def number(start: int, stop: int) -> np.ndarray:
        return digits[:, start:stop] @ (10 ** np.arange(stop - start - 1, -1, -1))

    return [number(0, 4), number(5, 7), number(8, 10), number(11, 13), number(14, 16),
            number(17, 19)]


def _plain_time_valid(texts: pa.Array) -> np.ndarray:
    """Which times in the plain form name a real moment (as `parse_event_time` checks)."""
    year, month, day, hour, minute, second = _plain_time_digits(texts)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    return (year >= 1000) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days) \
        & (hour < 24) & (minute < 60) & (second < 60)


def _plain_time_stored(texts: pa.Array) -> pa.Array:
    """Times in the plain form as stored: 'yyyy-MM-dd HH:mm:ss.ffffff', all 26 bytes, built
    byte by byte: the date and time where they are, the fraction padded with zeros."""
    offsets, data = _buffers(texts)
    starts, lengths = offsets[:-1], np.diff(offsets)
    stored = np.empty((len(texts), 26), dtype=np.uint8)
    stored[:, :19] = data[starts[:, None] + np.arange(19)]
    stored[:, 10], stored[:, 19] = ord(" "), ord(".")
    last = np.maximum(starts + lengths - 1, 0)
    has_fraction = (lengths > 19) & (data[np.minimum(starts + 19, last)] == ord("."))
    fraction = np.where(has_fraction, lengths - 20 - (data[last] == ord("Z")), 0)
    for digit in range(6):
        source = data[np.minimum(starts + 20 + digit, last)]
        stored[:, 20 + digit] = np.where(digit < fraction, source, ord("0"))
    return pa.StringArray.from_buffers(
        len(texts), pa.py_buffer(np.arange(0, 26 * len(texts) + 1, 26, dtype=np.int32)),
        pa.py_buffer(stored.tobytes()))


# -- chunks ---------------------------------------------------------------------------------
class _Pending:
    """One kind's rows waiting for their chunk: full when it holds `chunk_rows` rows or
    `chunk_bytes` of `_row_chars`, checked after each row as `chunks.file_chunks` does."""

    def __init__(self, chunk_rows: int, chunk_bytes: int):
        self.chunk_rows, self.chunk_bytes = chunk_rows, chunk_bytes
        self.rows: list = []
        self.size = 0

    def add(self, numbers: np.ndarray, sizes: np.ndarray, rows: list) -> list[tuple[int, list]]:
        """Add rows in file order; the chunks they filled, each with the line number of the
        row that filled it."""
        full, start = [], 0
        while start < len(rows):
            room = self.chunk_rows - len(self.rows)
            sums = np.cumsum(sizes[start:start + room])
            at = int(np.searchsorted(sums, self.chunk_bytes - self.size, side="left"))
            if at < len(sums):
                stop = start + at + 1
            elif len(sums) == room:
                stop = start + room
            else:
                self.rows.extend(rows[start:])
                self.size += int(sums[-1])
                break
            self.rows.extend(rows[start:stop])
            full.append((int(numbers[stop - 1]), self.rows))
            self.rows, self.size, start = [], 0, stop
        return full

    def rest(self) -> list:
        rows, self.rows, self.size = self.rows, [], 0
        return rows


def _event_rows(columns: list[pa.Array], escape: np.ndarray, event_format: str) -> list[str]:
    """Each event as the text of one row of its chunk: a TSV line, or a JSON array.

    Rows marked `escape` (a value may hold a character to escape) are written by Python as
    `chunks` writes them; the others have nothing to escape and are joined as arrays.
    """
    if event_format == EVENTS_TSV:
        separator, before, after = "\t", "", "\n"
    else:
        separator, before, after = '", "', '["', '"]'
    inner = pc.binary_join_element_wise(*columns, separator)
    rows = pc.binary_join_element_wise(before, inner, after, "").to_pylist()
    for index in np.flatnonzero(escape):
        values = [c[int(index)].as_py() for c in columns]
        rows[index] = ("\t".join(v.translate(_TSV_ESCAPES) for v in values) + "\n"
                       if event_format == EVENTS_TSV else json.dumps(values, ensure_ascii=False))
    return rows


class _FileChunks:
    """Rows into chunks, numbered per kind, in the order `chunks.file_chunks` yields them."""

    def __init__(self, chunk_rows: int, event_format: str, chunk_bytes: int):
        self.event_format, self.chunk_bytes = event_format, chunk_bytes
        self.pending = {KIND_EVENT: _Pending(chunk_rows, chunk_bytes),
                        KIND_REJECTED: _Pending(chunk_rows, chunk_bytes)}
        self.counters = {KIND_EVENT: 0, KIND_REJECTED: 0}

    def block(self, checked: _Checked) -> Iterator[tuple[str, int, int, str]]:
        numbers, columns, escape = checked.events()
        sizes = np.sum([_ints(pc.utf8_length(c)) for c in columns], axis=0) \
            + 4 * len(EVENT_FIELDS) if len(numbers) else np.zeros(0, np.int64)
        rows = _event_rows(columns, escape, self.event_format) if len(numbers) else []
        full = [(n, KIND_EVENT, chunk)
                for n, chunk in self.pending[KIND_EVENT].add(numbers, sizes, rows)]
        rejects = sorted(checked.rejects, key=lambda r: r[0])
        full += [(n, KIND_REJECTED, rows) for n, rows in self.pending[KIND_REJECTED].add(
            np.array([n for n, _ in rejects], np.int64),
            np.array([_row_chars(row) for _, row in rejects], np.int64),
            [row for _, row in rejects])]
        for _, kind, rows in sorted(full, key=lambda f: f[0]):
            yield from self.flush(kind, rows)

    def end(self) -> Iterator[tuple[str, int, int, str]]:
        for kind, pending in self.pending.items():
            rows = pending.rest()
            if rows:
                yield from self.flush(kind, rows)

    def flush(self, kind: str, rows: list) -> Iterator[tuple[str, int, int, str]]:
        if kind == KIND_REJECTED:
            pieces: Iterable[tuple[int, str]] = _json_chunks(rows, self.chunk_bytes)
        elif self.event_format == EVENTS_TSV:
            pieces = [(len(rows), "".join(rows))]
        else:
            pieces = _json_chunks(rows, self.chunk_bytes, json_rows_text)
        for count, text in pieces:
            self.counters[kind] += 1
            yield kind, self.counters[kind] - 1, count, text


# -- blocks ---------------------------------------------------------------------------------
Piece = tuple[pa.Array, np.ndarray]


def _pieces_of_lines(lines: Iterable[tuple[str, int]], block_lines: int) -> Iterator[Piece]:
    iterator = iter(lines)
    while True:
        block = list(itertools.islice(iterator, block_lines))
        if not block:
            return
        texts, states = zip(*block, strict=True)
        yield pa.array(texts, pa.string()), np.array(states, dtype=np.int8)


def _blocks(pieces: Iterable[Piece], block_lines: int) -> Iterator[tuple[Piece, bool]]:
    """Pieces gathered into blocks of at least `block_lines` lines (but the last), each with
    whether it is the file's last."""
    gathered: list[Piece] = []
    size = 0
    for texts, states in pieces:
        if size >= block_lines:
            yield _joined(gathered), False
            gathered, size = [], 0
        gathered.append((texts, states))
        size += len(states)
    if gathered:
        yield _joined(gathered), True


def _joined(pieces: list[Piece]) -> Piece:
    if len(pieces) == 1:
        return pieces[0]
    return (pa.concat_arrays([t.cast(pa.string()) for t, _ in pieces]),
            np.concatenate([s for _, s in pieces]))


def chunks_of_pieces(pieces: Iterable[Piece], event_types: Sequence[str],
                     source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                     event_format: str = EVENTS_JSON, chunk_bytes: int = CHUNK_MAX_BYTES,
                     block_lines: int = BLOCK_LINES) -> Iterator[tuple[str, int, int, str]]:
    """`file_chunks` of one file given as Arrow pieces: (texts, states) in line order,
    states as LINE_OK, LINE_BAD_UTF8, LINE_TOO_LONG (or True, False)."""
    rules = FileRules(event_types, source_time_zone)
    out = _FileChunks(chunk_rows, event_format, chunk_bytes)
    carried: Piece | None = None
    first_line = 1
    for (texts, states), last in _blocks(pieces, block_lines):
        if carried is not None:
            texts, states = _joined([carried, (texts, states)])
        checked, end = _judge_block(texts, states, first_line, last, rules)
        yield from out.block(checked)
        carried = (texts.slice(end), states[end:]) if end < len(states) else None
        first_line += end
    yield from out.end()


def file_chunks(file_lines: Iterable[tuple[str, int]], event_types: Sequence[str],
                source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                event_format: str = EVENTS_JSON, chunk_bytes: int = CHUNK_MAX_BYTES,
                block_lines: int = BLOCK_LINES) -> Iterator[tuple[str, int, int, str]]:
    """What `pipeline.validate.chunks.file_chunks` gives for the same arguments."""
    return chunks_of_pieces(_pieces_of_lines(file_lines, block_lines), event_types,
                            source_time_zone, chunk_rows, event_format, chunk_bytes, block_lines)
