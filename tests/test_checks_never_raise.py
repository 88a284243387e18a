"""Property-based: no value can make the checks raise, and both checking paths agree.

Hypothesis feeds arbitrary field values, arbitrary whole lines (with any state a reader can
give) and arbitrary files through the per-line reference (`chunks.file_chunks` over
`rules.py`) and the columnar checks (`columnar.file_chunks`, in small blocks so that records
cross block ends). Neither may raise (a header that cannot be read refuses the file, the one
outcome that is not rows, and it must be the same on both), and their chunks must be the
same text. Quoted values that pass are compared with Python's `csv` module.

The examples are derived from the test's own source (`derandomize=True`): every run tries
the same ones, so a failure replays as it is; hypothesis prints the failing example and its
reproduction blob.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.contract import EVENT_FIELDS
from pipeline.contract import EVENTS_JSON
from pipeline.contract import EVENTS_TSV
from pipeline.contract import KIND_EVENT
from pipeline.contract import LINE_BAD_UTF8
from pipeline.contract import LINE_END_CR
from pipeline.contract import LINE_END_CRLF
from pipeline.contract import LINE_OK
from pipeline.contract import LINE_TOO_LONG
from pipeline.errors import FileRefused
from pipeline.read.local import LocalFile
from pipeline.validate import chunks
from pipeline.validate import columnar
from pipeline.validate.rules import parse_event_time

CHECKS = settings(derandomize=True, deadline=None, max_examples=300, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow])
HEADER = ",".join(EVENT_FIELDS)
GOOD = ["e1", "u1", "p1", "view", "1.00", "2026-01-31T12:00:00Z"]
TIME_ZONES = st.sampled_from(["UTC", "America/New_York", "Asia/Kolkata"])

# Any text, weighted towards what the checks look at: digits, signs, separators, quotes,
# line ends, whitespace of every kind, and the pieces of a timestamp.
_PIECES = st.sampled_from(["-", "+", ":", ".", "T", " ", "Z", ",", '"', "\r", "\n", "\r\n",
                           "\t", "\x00", "\ufeff", "\u3000", "\u0660", "\uff11", "24", "99",
                           "00", "60", "2026-01-31T12:00:00", "9999-12-31T23:59:59",
                           "0001-01-01T00:00:00"])
ANY_TEXT = st.lists(st.one_of(st.text(max_size=8), _PIECES, st.sampled_from(GOOD)),
                    max_size=6).map("".join)
# A timestamp's shape with any two-digit offset, the values `timezone()` refuses included.
TIMES = st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}"
                      r"(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})?", fullmatch=True)
STATES = st.sampled_from([LINE_OK, LINE_BAD_UTF8, LINE_TOO_LONG, True, False]).flatmap(
    lambda state: st.sampled_from([state, state | LINE_END_CRLF, state | LINE_END_CR]))


def outcome(chunk_iterator) -> list:
    """Every chunk, or for a file refused as a whole its reason and detail."""
    try:
        return list(chunk_iterator)
    except FileRefused as e:
        return [("refused", e.reason, e.detail)]


def reader_lines(text: str) -> list[tuple[str, int]]:
    """The physical lines of `text` as the local reader gives them, line ends in the state."""
    lines = []
    for raw in text.encode("utf-8").splitlines(keepends=True):
        end = LINE_END_CRLF if raw.endswith(b"\r\n") else \
            LINE_END_CR if raw.endswith(b"\r") else 0
        lines.append((raw.rstrip(b"\r\n").decode("utf-8"), LINE_OK | end))
    return lines


def assert_agree(lines: list[tuple[str, int]], time_zone: str = "UTC") -> list:
    """Both paths on the same lines, in JSON and TSV, in blocks of 2 and of many lines."""
    expected = None
    for event_format in (EVENTS_JSON, EVENTS_TSV):
        expected = outcome(chunks.file_chunks(iter(lines), DEFAULT_EVENT_TYPES, time_zone,
                                              chunk_rows=3, event_format=event_format))
        for block_lines in (2, columnar.BLOCK_LINES):
            actual = outcome(columnar.file_chunks(iter(lines), DEFAULT_EVENT_TYPES,
                                                  time_zone, 3, event_format,
                                                  block_lines=block_lines))
            assert actual == expected, (event_format, block_lines, lines)
    return expected


@CHECKS
@given(values=st.lists(ANY_TEXT, min_size=6, max_size=6), time_zone=TIME_ZONES,
       header=st.sampled_from([None, HEADER, "user_id,event_id,product_id,event_type,price,"
                               "event_time"]))
@example(values=[*GOOD[:5], "2026-01-31T12:00:00+24:00"], time_zone="UTC", header=None)
@example(values=[*GOOD[:5], "2026-01-31T12:00:00-24:00"], time_zone="UTC", header=HEADER)
@example(values=[*GOOD[:5], "2026-01-31T12:00:00+99:00"], time_zone="UTC", header=None)
def test_any_field_values_never_raise_and_both_paths_agree(values, time_zone, header):
    text = "\n".join([*([header] if header else []), ",".join(values), ",".join(GOOD)])
    assert_agree(reader_lines(text), time_zone)


@CHECKS
@given(lines=st.lists(st.tuples(st.one_of(ANY_TEXT, st.just(HEADER), st.just("sep=,"),
                                          st.just("")), STATES), max_size=12),
       time_zone=TIME_ZONES)
def test_any_lines_never_raise_and_both_paths_agree(lines, time_zone):
    assert_agree(lines, time_zone)


@CHECKS
@given(time=TIMES, time_zone=TIME_ZONES)
@example(time="2026-01-31T12:00:00+24:00", time_zone="UTC")
@example(time="2026-01-31T12:00:00-24:00", time_zone="America/New_York")
def test_any_timestamp_is_parsed_or_refused_never_an_error(time, time_zone):
    stored = parse_event_time(time, time_zone)
    assert stored is None or len(stored) == 26
    event = outcome(chunks.file_chunks(iter([(",".join([*GOOD[:5], time]), LINE_OK)]),
                                       DEFAULT_EVENT_TYPES, time_zone))
    assert [c[0] for c in event] == ["event" if stored else "rejected"]


# Values a CSV writer quotes: commas, quotes, every kind of line end inside them.
ID_VALUES = st.lists(st.one_of(st.sampled_from(["a", "1", ",", '"', "\r\n", "\n", "\r", " ",
                                                "\t", "\u00e9", "\u2028"]),
                               st.text(st.characters(blacklist_characters="\x00"),
                                       max_size=3)),
                     min_size=1, max_size=12).map("".join).filter(
    lambda v: v.strip() and len(v.strip()) <= 64)


# (line end, quoting): with minimal quoting, csv quotes a field only for the characters of
# its own line end, so a lone \r would go unquoted in a \n file (and end the record there).
DIALECTS = st.sampled_from([("\r\n", csv.QUOTE_MINIMAL), ("\r\n", csv.QUOTE_ALL),
                            ("\n", csv.QUOTE_ALL), ("\r", csv.QUOTE_ALL)])

@CHECKS
@given(ids=st.lists(ID_VALUES, min_size=3, max_size=3), dialect=DIALECTS)
@example(ids=["e1", "u\r\n1", "p1"], dialect=("\r\n", csv.QUOTE_MINIMAL))
@example(ids=["e1", "u\r\n1", "p\r2"], dialect=("\n", csv.QUOTE_ALL))
def test_quoted_values_are_stored_as_csv_reads_them(ids, dialect):
    """A file as Python's csv writes it, read by the job's reader, checked both ways: each
    stored value is the field `csv.reader` reads, trimmed as every field is."""
    line_end, quoting = dialect
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator=line_end, quoting=quoting)
    writer.writerow(EVENT_FIELDS)
    writer.writerow([*ids, "view", "1.00", "2026-01-31T12:00:00Z"])
    data = buffer.getvalue().encode("utf-8")
    expected = [f.strip() for f in list(csv.reader(io.StringIO(data.decode(), newline="")))[1]]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events_1.csv"
        path.write_bytes(data)
        reference = outcome(chunks.file_chunks(LocalFile(path).lines(), DEFAULT_EVENT_TYPES))
        from_pieces = outcome(columnar.chunks_of_pieces(LocalFile(path).line_pieces(),
                                                        DEFAULT_EVENT_TYPES))
    assert from_pieces == reference
    assert [c[0] for c in reference] == [KIND_EVENT], reference
    assert json.loads(reference[0][3])[0][:3] == expected[:3]
