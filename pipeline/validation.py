"""The row rules: every line of a file becomes an event, a reject with a reason, a header or a
blank line. Plain Python, no Spark: `pipeline.transforms` runs it inside Spark tasks.

Parsing is defensive by construction: each check is a pattern or a guarded conversion, so a
bad value costs one row and can never fail a batch.
"""

from __future__ import annotations

import calendar
import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from pipeline.schema import EVENT_FIELDS, MAX_LENGTHS, PRICE_PATTERN

RAW_LINE_MAX_CHARS = 16000
DETAIL_MAX_CHARS = 512
KIND_EVENT, KIND_REJECTED, KIND_HEADER, KIND_BLANK = "event", "rejected", "header", "blank"

_PRICE = re.compile(PRICE_PATTERN)
_NEGATIVE_PRICE = re.compile("^-" + PRICE_PATTERN[1:])
# ISO 8601: 'T' or a space, optional fraction (1-6 digits), optional 'Z' or +hh:mm offset.
_EVENT_TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
                         r"(Z|[+-]\d\d:\d\d)?")
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
    return timezone.utc if name.upper() == "UTC" else ZoneInfo(name)


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
        zone = timezone.utc
    elif offset:
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    else:
        zone = _zone(source_time_zone)
    try:
        utc = value.replace(tzinfo=zone).astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
        return None
    if not 1000 <= utc.year <= 9999:
        return None
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


@lru_cache(maxsize=4096)
def _valid_date(year: int, month: int, day: int) -> bool:
    return 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]


def _split(text: str) -> list[str] | None:
    """CSV fields of one line; None when its quoting is broken."""
    if '"' not in text and "\0" not in text:
        # What the csv module gives for such a line, five times faster.
        return text.split(",") if text else []
    if text.count('"') % 2:
        return None
    try:
        return next(csv.reader((text,)), [])
    except csv.Error:
        return None


def _reject(line_number: int, raw: str, reason: str, detail: str) -> Line:
    return Line(line_number, KIND_REJECTED, reason, detail[:DETAIL_MAX_CHARS],
                raw[:RAW_LINE_MAX_CHARS])


def _quoted(value: str | None) -> str:
    return f"'{(value or '')[:60]}'"


def check_event(values: Sequence[str | None], event_types: frozenset[str],
                source_time_zone: str, may_hold_quotes: bool = True,
                ) -> tuple[str, str] | tuple[None, tuple[str, ...]]:
    """(reason, detail) for a bad event, or (None, normalised fields) for a good one.

    `values` are trimmed fields in EVENT_FIELDS order, None where empty.
    """
    event_id, user_id, product_id, event_type, price, event_time = values
    if may_hold_quotes and any(v is not None and '"' in v for v in values):
        return "broken_quoting", "a field contains a quote character"
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


def classify_file(lines: Iterable[tuple[str, bool]], event_types: Iterable[str],
                  source_time_zone: str = "UTC") -> Iterator[Line]:
    """Classify the lines of one file, in file order.

    `lines` yields (text, is_valid_utf8) with text already made valid UTF-8. A first line
    naming the six columns in any order is the header and maps columns by name (a BOM is
    ignored); a first line naming other columns makes every line of the file `bad_header`;
    otherwise columns are taken in standard order.
    """
    types = frozenset(event_types)
    order = _STANDARD_ORDER
    bad_header = False
    for line_number, (text, utf8_ok) in enumerate(lines, start=1):
        if line_number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            yield Line(line_number, KIND_BLANK)
            continue
        fields = _split(text)
        if line_number == 1 and fields:
            names = [f.strip().lower() for f in fields]
            if sorted(names) == sorted(EVENT_FIELDS):
                order = tuple(names.index(n) for n in EVENT_FIELDS)
                yield Line(line_number, KIND_HEADER)
                continue
            bad_header = not _KNOWN_NAMES.isdisjoint(names)
        if not utf8_ok:
            yield _reject(line_number, text, "invalid_utf8", "line is not valid UTF-8")
        elif bad_header:
            yield _reject(line_number, text, "bad_header", "the file's header is not the"
                          f" columns {','.join(EVENT_FIELDS)} (in any order)")
        elif fields is None:
            yield _reject(line_number, text, "broken_quoting", "unbalanced quotes")
        elif len(fields) != len(EVENT_FIELDS):
            yield _reject(line_number, text, "wrong_column_count",
                          f"expected {len(EVENT_FIELDS)} columns, found {len(fields)}")
        else:
            values = [fields[i].strip() or None for i in order]
            reason, result = check_event(values, types, source_time_zone, '"' in text)
            if reason:
                yield _reject(line_number, text, reason, result)
            else:
                yield Line(line_number, KIND_EVENT, fields=result)
