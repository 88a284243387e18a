"""The row rules: every record of a file becomes an event, a reject with a reason, a header or
a blank line. Plain Python, no Spark: `pipeline.validate.in_spark` runs it inside Spark tasks.

Parsing is defensive by construction: each check is a pattern or a guarded conversion, so a
bad value costs one row and can never fail a batch.
"""

from __future__ import annotations

import calendar
import re
from collections import deque
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from pipeline.contract import EVENT_FIELDS
from pipeline.contract import KIND_BLANK
from pipeline.contract import KIND_EVENT
from pipeline.contract import KIND_HEADER
from pipeline.contract import KIND_REJECTED
from pipeline.contract import LINE_BAD_UTF8
from pipeline.contract import LINE_END_CR
from pipeline.contract import LINE_END_CRLF
from pipeline.contract import LINE_MAX_BYTES
from pipeline.contract import LINE_OK
from pipeline.contract import LINE_STATE_MASK
from pipeline.contract import LINE_TOO_LONG
from pipeline.contract import MAX_LENGTHS
from pipeline.contract import PRICE_PATTERN
from pipeline.errors import FileRefused

RAW_LINE_MAX_CHARS = 16000
# What is kept of a line rejected as too long: enough to recognise it, never the whole.
RAW_TOO_LONG_CHARS = 1000
DETAIL_MAX_CHARS = 512

_PRICE = re.compile(PRICE_PATTERN)
_NEGATIVE_PRICE = re.compile("^-" + PRICE_PATTERN[1:])
# ISO 8601: 'T' or a space, optional fraction (1-6 digits), optional 'Z' or +hh:mm offset.
# ASCII digits only: Python's \d also takes other scripts' digits, which no database reads.
_EVENT_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
                         r"(Z|[+-]\d\d:\d\d)?", re.ASCII)
_STANDARD_ORDER = tuple(range(len(EVENT_FIELDS)))
_KNOWN_NAMES = frozenset(EVENT_FIELDS)
_ID_LIMITS = tuple((EVENT_FIELDS.index(n), n, limit) for n, limit in MAX_LENGTHS.items()
                   if n != "event_type")


@dataclass(frozen=True)
class Line:
    """One classified line. `fields` (event order) are set for events only."""

    line_number: int
    kind: str
    reason: str | None = None
    detail: str | None = None
    raw_line: str | None = None
    fields: tuple[str, ...] | None = None


@lru_cache(maxsize=16)
def _zone(name: str):
    return UTC if name.upper() == "UTC" else ZoneInfo(name)


def parse_event_time(text: str | None, source_time_zone: str = "UTC") -> str | None:
    """'yyyy-MM-dd HH:mm:ss.ffffff' in UTC, or None when `text` is not such a timestamp.

    An offset in the text wins; without one the time is local to `source_time_zone`.
    """
    match = _EVENT_TIME.fullmatch(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if int(year) < 1000:
        return None
    if offset == "Z" or (not offset and source_time_zone.upper() == "UTC"):
        # Already UTC (the generator's form): only the ranges need checking, which is much
        # cheaper than building, converting and formatting a datetime for every row.
        if not (_valid_date(int(year), int(month), int(day)) and int(hour) < 24
                and int(minute) < 60 and int(second) < 60):
            return None
        return f"{year}-{month}-{day} {hour}:{minute}:{second}.{(fraction or '').ljust(6, '0')}"
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((fraction or "0").ljust(6, "0")))
    except ValueError:
        return None
    if offset == "Z":
        zone = UTC
    elif offset:
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:  # no such offset: timezone() would raise
            return None
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    else:
        zone = _zone(source_time_zone)
    try:
        utc = value.replace(tzinfo=zone).astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
        return None
    if not 1000 <= utc.year <= 9999:
        return None
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


@lru_cache(maxsize=4096)
def _valid_date(year: int, month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


# One RFC 4180 field: quoted (a doubled quote stands for one quote; commas and line ends are
# data) or plain (no quote at all: a quote inside an unquoted field is broken quoting).
_FIELD = re.compile(r'"((?:[^"]|"")*)"|([^,"]*)')


def split_record(text: str) -> list[str] | None:
    """The fields of one CSV record (it may span lines); None when its quoting is broken."""
    if "\0" in text:
        return None  # NUL is no character of a CSV file; such a line is damaged
    if '"' not in text:
        return text.split(",") if text else []
    fields, pos = [], 0
    while True:
        match = _FIELD.match(text, pos)
        quoted, plain = match.groups()
        fields.append(quoted.replace('""', '"') if quoted is not None else plain)
        pos = match.end()
        if pos == len(text):
            return fields
        if text[pos] != ",":
            return None
        pos += 1


def rejected_line(line_number: int, raw: str, reason: str, detail: str) -> Line:
    """A rejected record, its detail and raw text cut to what `events_rejected` keeps."""
    return Line(line_number, KIND_REJECTED, reason, detail[:DETAIL_MAX_CHARS],
                raw[:RAW_LINE_MAX_CHARS])


def _quoted(value: str | None) -> str:
    return f"'{(value or '')[:60]}'"


def check_event(values: Sequence[str | None], event_types: frozenset[str],
                source_time_zone: str) -> tuple[str, str] | tuple[None, tuple[str, ...]]:
    """(reason, detail) for a bad event, or (None, normalised fields) for a good one.

    `values` are trimmed fields in EVENT_FIELDS order, None where empty.
    """
    event_id, user_id, product_id, event_type, price, event_time = values
    if event_id is None:
        return "missing_event_id", "event_id is empty"
    if user_id is None:
        return "missing_user_id", "user_id is empty"
    if product_id is None:
        return "missing_product_id", "product_id is empty"
    for index, name, limit in _ID_LIMITS:
        if len(values[index]) > limit:
            return "field_too_long", f"{name} is longer than {limit} characters"
    if event_type not in event_types:
        return ("unknown_event_type", f"event_type {_quoted(event_type)} is not one of "
                + ",".join(sorted(event_types)))
    if price is None or not _PRICE.fullmatch(price):
        if price is not None and _NEGATIVE_PRICE.fullmatch(price):
            return "negative_price", f"price {_quoted(price)} is negative"
        return "bad_price", f"price {_quoted(price)} is not a number with at most 2 decimals"
    utc_time = parse_event_time(event_time, source_time_zone)
    if utc_time is None:
        return ("bad_event_time", f"event_time {_quoted(event_time)} is not an ISO timestamp"
                " like 2026-01-31T12:00:00Z")
    return None, (event_id, user_id, product_id, event_type, price, utc_time)


class _Lines:
    """A file's numbered lines with push-back: a quoted field that never closes gives back
    the lines it took, to be read again as records of their own."""

    def __init__(self, lines: Iterable[tuple[str, int]]):
        self._source = enumerate(lines, start=1)
        self._back: deque[tuple[int, str, int]] = deque()

    def next(self) -> tuple[int, str, int] | None:
        if self._back:
            return self._back.popleft()
        for number, (text, state) in self._source:
            return number, text, int(state)
        return None

    def give_back(self, taken: list[tuple[int, str, int]]) -> None:
        self._back.extendleft(reversed(taken))


def line_end(state: int) -> str:
    """The line end a line's state records (\\n when the reader could not tell)."""
    if state & LINE_END_CRLF:
        return "\r\n"
    return "\r" if state & LINE_END_CR else "\n"


def _record(first: str, first_state: int, lines: _Lines) -> str:
    """The whole record that starts with line `first`, which opens a quoted field.

    A quoted field may hold line ends (RFC 4180): lines are joined with the line end each
    had in the file (`line_end`) until the quotes balance. If they never do within
    LINE_MAX_BYTES, before a line that is not plain UTF-8, or before the file ends, or the
    joined lines are no valid record either, the lines taken are given back and `first`
    stands alone (and is rejected as broken quoting).
    """
    taken: list[tuple[int, str, int]] = []
    text, size, end = first, len(first), line_end(first_state)
    while True:
        line = lines.next()
        if line is None or line[2] & LINE_STATE_MASK != LINE_OK \
                or size + len(line[1]) + len(end) > LINE_MAX_BYTES:
            lines.give_back(taken + ([line] if line is not None else []))
            return first
        taken.append(line)
        text += end + line[1]
        size += len(line[1]) + len(end)
        end = line_end(line[2])
        if not text.count('"') % 2:
            if split_record(text) is None:
                lines.give_back(taken)
                return first
            return text


def wrong_column_count(line_number: int, text: str, found: int,
                       expected: int = len(EVENT_FIELDS)) -> Line:
    return rejected_line(line_number, text, "wrong_column_count",
                         f"expected {expected} columns, found {found}")


# Excel's first line naming the separator, before the header.
_SEPARATOR_LINE = re.compile(r'"?sep=(.?)"?', re.IGNORECASE)


def header_order(fields: list[str]) -> tuple[int, ...] | None:
    """Where each of EVENT_FIELDS is in a header's `fields`; None when the fields are no
    header (they name none of the columns). FileRefused when they name some of them but
    not each exactly once: reading such a file in any order would shift values."""
    names = [f.strip().lower() for f in fields]
    if _KNOWN_NAMES.isdisjoint(names):
        return None
    missing = [n for n in EVENT_FIELDS if n not in names]
    twice = [n for n in EVENT_FIELDS if names.count(n) > 1]
    if missing or twice:
        problems = ([f"has no column {', '.join(missing)}"] if missing else []) + \
            ([f"names {', '.join(twice)} more than once"] if twice else [])
        raise FileRefused("bad_header", f"the header '{','.join(fields)[:200]}'"
                          f" {'; '.join(problems)}: it needs each of"
                          f" {','.join(EVENT_FIELDS)} once (in any order, other columns are"
                          " ignored); fix it and load the file under a new name")
    return tuple(names.index(n) for n in EVENT_FIELDS)


class FileRules:
    """The rules for one file's records, in file order. The header is looked for until the
    first record that is not blank and not Excel's `sep=,`: if that record names the
    columns, its names decide which value goes where (`order`) and how many columns each
    record has (`width`); if it names none, the file has no header and is read in the
    standard order. A header naming only some of them refuses the file (FileRefused)."""

    def __init__(self, event_types: Iterable[str], source_time_zone: str = "UTC"):
        self.types = frozenset(event_types)
        self.source_time_zone = source_time_zone
        self.order = _STANDARD_ORDER
        self.width = len(EVENT_FIELDS)
        self.header_done = False
        self._separator_seen = False

    def classify(self, line: tuple[int, str, int], lines: _Lines) -> Line:
        """The record that starts with `line`; it takes from `lines` the further lines of a
        quoted field that holds line ends. `lines` is anything with `next()` and
        `give_back()` as `_Lines` has them (`columnar` passes a block's lines).

        No value can make this raise: an error while checking a record rejects it as
        `check_failed`. Only a header that cannot be read raises FileRefused."""
        line_number, text, full_state = line
        state = full_state & LINE_STATE_MASK
        if line_number == 1:
            text = text.removeprefix("\ufeff")
        if state == LINE_TOO_LONG:
            self.header_done = True
            return Line(line_number, KIND_REJECTED, "line_too_long",
                        f"the line is longer than {LINE_MAX_BYTES} bytes; its first"
                        f" {RAW_TOO_LONG_CHARS} characters are kept", text[:RAW_TOO_LONG_CHARS])
        if not text.strip():
            return Line(line_number, KIND_BLANK)
        if state != LINE_BAD_UTF8 and text.count('"') % 2:
            text = _record(text, full_state, lines)
        try:
            return self._check(line_number, text, state)
        except FileRefused:
            raise
        except Exception as e:  # noqa: BLE001 - a value the checks did not foresee
            return rejected_line(line_number, text, "check_failed", "the checks failed on"
                                 f" this record ({type(e).__name__}: {e}); please report it")

    def _check(self, line_number: int, text: str, state: int) -> Line:
        fields = split_record(text)
        if not self.header_done:
            separator = _SEPARATOR_LINE.fullmatch(text.strip())
            if separator and not self._separator_seen:
                if separator.group(1) != ",":
                    raise FileRefused("bad_header", f"the file says its separator is"
                                      f" {_quoted(separator.group(1))} ({text.strip()[:20]});"
                                      " only ',' is read: save it as comma-separated CSV")
                self._separator_seen = True
                return Line(line_number, KIND_HEADER)
            self.header_done = True
            order = header_order(fields) if fields else None
            if order is not None:
                self.order, self.width = order, len(fields)
                return Line(line_number, KIND_HEADER)
        if state == LINE_BAD_UTF8:
            return rejected_line(line_number, text, "invalid_utf8", "line is not valid UTF-8")
        if fields is None:
            return rejected_line(line_number, text, "broken_quoting",
                                 "unbalanced quotes, or a quote inside an unquoted field")
        if len(fields) != self.width:
            return wrong_column_count(line_number, text, len(fields), self.width)
        values = [fields[i].strip() or None for i in self.order]
        reason, result = check_event(values, self.types, self.source_time_zone)
        if reason:
            return rejected_line(line_number, text, reason, result)
        return Line(line_number, KIND_EVENT, fields=result)


def classify_file(lines: Iterable[tuple[str, int]], event_types: Iterable[str],
                  source_time_zone: str = "UTC") -> Iterator[Line]:
    """Classify the records of one file, in file order.

    `lines` yields (text, state): text already made valid UTF-8, state one of LINE_OK,
    LINE_BAD_UTF8, LINE_TOO_LONG (True and False work as the first two), plus LINE_END_CRLF
    or LINE_END_CR when the reader knows the line ended so. A record is a line, or several
    when a quoted field holds line ends; its number is its first line's. Blank lines and
    Excel's `sep=,` may come before the header; the header names the columns in any order
    (case and spaces ignored, a BOM ignored, other columns ignored). See `FileRules`; a
    header that names only some columns raises FileRefused (the file is quarantined).

    This is the reference implementation, one line at a time; `pipeline.validate.columnar`
    gives the same results for blocks of lines at once.
    """
    rules = FileRules(event_types, source_time_zone)
    numbered = _Lines(lines)
    while (line := numbered.next()) is not None:
        yield rules.classify(line, numbered)
