"""The row rules in plain Python: every line lands in the right kind with the right reason,
headers map by name, times come out in UTC."""

from __future__ import annotations

import csv
import io

import pytest

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.contract import FILE_REASONS
from pipeline.contract import LINE_END_CR
from pipeline.contract import LINE_END_CRLF
from pipeline.contract import LINE_OK
from pipeline.contract import REJECT_REASONS
from pipeline.errors import FileRefused
from pipeline.validate import rules
from pipeline.validate.rules import classify_file
from pipeline.validate.rules import parse_event_time

HEADER = "event_id,user_id,product_id,event_type,price,event_time"
GOOD = "e1,u1,p1,view,9.99,2026-01-31T12:00:00Z"


def classify(*lines: str, tz: str = "UTC", utf8_ok: bool = True):
    return list(classify_file(((line, utf8_ok) for line in lines), DEFAULT_EVENT_TYPES, tz))


def test_good_file_gives_header_and_events():
    lines = classify(HEADER, GOOD, "e2,u2,p2,purchase,10,2026-01-31 12:00:00.5")
    assert [(x.line_number, x.kind) for x in lines] == [(1, "header"), (2, "event"), (3, "event")]
    assert lines[1].fields == ("e1", "u1", "p1", "view", "9.99", "2026-01-31 12:00:00.000000")
    assert lines[2].fields[5] == "2026-01-31 12:00:00.500000"


@pytest.mark.parametrize("line, reason", [
    ("e1,,p1,view,1.00,2026-01-31T12:00:00Z", "missing_user_id"),
    ("e1,  ,p1,view,1.00,2026-01-31T12:00:00Z", "missing_user_id"),
    (",u1,p1,view,1.00,2026-01-31T12:00:00Z", "missing_event_id"),
    ("e1,u1,,view,1.00,2026-01-31T12:00:00Z", "missing_product_id"),
    ("e1,u1,p1,view,1.00,yesterday", "bad_event_time"),
    ("e1,u1,p1,view,1.00,2026-13-40T12:00:00Z", "bad_event_time"),
    ("e1,u1,p1,view,1.00,2026-02-30T12:00:00Z", "bad_event_time"),
    ("e1,u1,p1,view,1.00,1706702400000", "bad_event_time"),
    ("e1,u1,p1,view,1.00,2026-01-31", "bad_event_time"),
    ("e1,u1,p1,view,1.00,", "bad_event_time"),
    ("e1,u1,p1,view,1.00,0999-01-31T12:00:00Z", "bad_event_time"),
    ("e1,u1,p1,view,1.00,\uff12\uff10\uff12\uff16-01-31T12:00:00Z", "bad_event_time"),
    ("e1,u1,p1,view,1.00,2026-01-31T12:00:00+\u0660\u0661:00", "bad_event_time"),
    ("e1,u1,p1,view,\uff11.00,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,abc,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,NaN,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,1e309,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,1.999,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,,2026-01-31T12:00:00Z", "bad_price"),
    ("e1,u1,p1,view,-5.00,2026-01-31T12:00:00Z", "negative_price"),
    ("e1,u1,p1,teleport,1.00,2026-01-31T12:00:00Z", "unknown_event_type"),
    ("e1,u1,p1,,1.00,2026-01-31T12:00:00Z", "unknown_event_type"),
    ("e1,u1,p1,view,1.00", "wrong_column_count"),
    ("e1,u1,p1,view,1.00,2026-01-31T12:00:00Z,extra", "wrong_column_count"),
    ('"e1,u1,p1,view,1.00,2026-01-31T12:00:00Z', "broken_quoting"),
    ('e"1,u1,p1,view,1.00,2026-01-31T12:00:00Z', "broken_quoting"),
    ('e""1,u1,p1,view,1.00,2026-01-31T12:00:00Z', "broken_quoting"),
    ("e" * 65 + ",u1,p1,view,1.00,2026-01-31T12:00:00Z", "field_too_long"),
    ("e1,u1,p" + "x" * 64 + ",view,1.00,2026-01-31T12:00:00Z", "field_too_long"),
])
def test_each_bad_line_is_rejected_with_its_reason(line, reason):
    assert reason in REJECT_REASONS  # the contract lists every reason the rules give
    lines = classify(HEADER, line, GOOD)
    assert [x.kind for x in lines] == ["header", "rejected", "event"]
    assert (lines[1].reason, lines[1].raw_line, lines[1].line_number) == (reason, line, 2)
    assert lines[1].detail


def test_quoted_comma_is_one_field():
    lines = classify('e1,"u,1",p1,view,1.00,2026-01-31T12:00:00Z')
    assert lines[0].kind == "event" and lines[0].fields[1] == "u,1"


def test_invalid_utf8_is_rejected_first():
    assert classify("e1,u1\ufffd,p1,view,1.00,2026-01-31T12:00:00Z", utf8_ok=False)[0].reason \
        == "invalid_utf8"


def test_header_in_another_order_maps_by_name_and_bom_is_ignored():
    lines = classify("\ufeffprice,event_time,user_id,event_id,event_type,product_id",
                     "2.50,2026-01-31T12:00:00Z,u7,e7,purchase,p7")
    assert lines[0].kind == "header"
    assert lines[1].fields[:5] == ("e7", "u7", "p7", "purchase", "2.50")


def test_header_names_are_case_and_space_insensitive():
    assert classify(" Event_ID ,user_id,product_id,event_type,price,EVENT_TIME")[0].kind == \
        "header"


def test_file_without_header_is_read_in_standard_order():
    lines = classify(GOOD)
    assert lines[0].kind == "event" and lines[0].fields[0] == "e1"


@pytest.mark.parametrize("header, problem", [
    ("event_id,user,product,type,price,time", "has no column user_id, product_id"),
    ("event_id,user_id,product_id,event_type,price", "has no column event_time"),
    ("event_id,user_id,product_id,event_type,price,event_time,EVENT_ID",
     "names event_id more than once"),
])
def test_header_naming_only_some_columns_refuses_the_file(header, problem):
    with pytest.raises(FileRefused) as refused:
        classify(header, GOOD, GOOD)
    assert refused.value.reason == "bad_header" and refused.value.reason in FILE_REASONS
    assert problem in refused.value.detail


REORDERED = "user_id,event_id,product_id,event_type,price,event_time"
SWAPPED = "u7,e7,p7,purchase,2.50,2026-01-31T12:00:00Z"


@pytest.mark.parametrize("before", [[""], ["", " ", "\t"], ["sep=,"], ["\ufeffsep=,"],
                                    ['"sep=,"'], ["SEP=,", ""], ["", "sep=,"]])
def test_header_after_blank_lines_or_excel_separator_maps_by_name(before):
    lines = classify(*before, REORDERED, SWAPPED)
    assert [x.kind for x in lines[len(before):]] == ["header", "event"]
    assert lines[-1].fields[:2] == ("e7", "u7")  # never shifted into the standard order
    assert lines[-1].line_number == len(before) + 2


def test_extra_header_columns_are_ignored_and_rows_need_the_header_width():
    lines = classify("note," + REORDERED + ",extra", "n," + SWAPPED + ",x", SWAPPED)
    assert [x.kind for x in lines] == ["header", "event", "rejected"]
    assert lines[1].fields[:5] == ("e7", "u7", "p7", "purchase", "2.50")
    assert (lines[2].reason, lines[2].detail) == ("wrong_column_count",
                                                  "expected 8 columns, found 6")


def test_other_separator_refuses_the_file():
    with pytest.raises(FileRefused) as refused:
        classify("sep=;", "event_id;user_id", GOOD)
    assert refused.value.reason == "bad_header" and "';'" in refused.value.detail


def test_a_header_is_looked_for_only_before_the_first_record():
    lines = classify(GOOD, HEADER, "sep=,")
    assert [(x.kind, x.reason) for x in lines] == [
        ("event", None), ("rejected", "unknown_event_type"), ("rejected", "wrong_column_count")]


@pytest.mark.parametrize("offset", ["+24:00", "-24:00", "+99:00", "+00:60", "-23:99"])
def test_impossible_utc_offset_is_a_bad_event_time_not_an_error(offset):
    line = f"e1,u1,p1,view,1.00,2026-01-31T12:00:00{offset}"
    assert parse_event_time(line.split(",")[-1]) is None
    assert [x.reason for x in classify(HEADER, line)] == [None, "bad_event_time"]
    assert classify("e1,u1,p1,view,1.00,2026-01-31T12:00:00+23:59")[0].fields[5] == \
        "2026-01-30 12:01:00.000000"


def test_an_error_in_the_checks_costs_its_row_only(monkeypatch):
    def broken(*_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(rules, "check_event", broken)
    lines = classify(HEADER, GOOD)
    assert (lines[1].kind, lines[1].reason, lines[1].raw_line) == ("rejected", "check_failed",
                                                                   GOOD)
    assert "RuntimeError: boom" in lines[1].detail


@pytest.mark.parametrize("end, flag", [("\r\n", LINE_END_CRLF), ("\r", LINE_END_CR),
                                       ("\n", 0)])
def test_line_ends_inside_a_quoted_field_are_kept_as_written(end, flag):
    text = f'e1,"u{end}1{end}{end}2",p1,view,1.00,2026-01-31T12:00:00Z{end}'
    physical = text.split(end)[:-1]
    lines = list(classify_file([(line, LINE_OK | flag) for line in physical],
                               DEFAULT_EVENT_TYPES))
    expected = next(csv.reader(io.StringIO(text, newline="")))
    assert [x.kind for x in lines] == ["event"]
    assert lines[0].fields[1] == expected[1] == f"u{end}1{end}{end}2"


def test_blank_lines_are_counted_as_neither_and_keep_line_numbers():
    lines = classify(HEADER, "", GOOD, "   ")
    assert [(x.line_number, x.kind) for x in lines] == [
        (1, "header"), (2, "blank"), (3, "event"), (4, "blank")]


def test_long_raw_line_is_cut():
    line = "e1,," + "x" * 20000
    assert len(classify(line)[0].raw_line) == 16000


@pytest.mark.parametrize("text, tz, expected", [
    ("2026-03-29T01:30:00Z", "UTC", "2026-03-29 01:30:00.000000"),
    ("2026-03-29T03:30:00+02:00", "UTC", "2026-03-29 01:30:00.000000"),
    ("2026-07-01 12:00:00", "UTC", "2026-07-01 12:00:00.000000"),
    ("2026-07-01 12:00:00", "Europe/Berlin", "2026-07-01 10:00:00.000000"),
    ("2026-01-01 12:00:00", "Europe/Berlin", "2026-01-01 11:00:00.000000"),
    ("2026-07-01T12:00:00.123456-05:00", "Europe/Berlin", "2026-07-01 17:00:00.123456"),
    ("2026-07-01T12:00:00.5", "UTC", "2026-07-01 12:00:00.500000"),
    ("2026-07-01T24:00:00Z", "UTC", None),
    ("2026-07-01T12:00:00.1234567Z", "UTC", None),
    ("2024-02-29T12:00:00Z", "UTC", "2024-02-29 12:00:00.000000"),
    ("2026-02-29T12:00:00Z", "UTC", None),
    ("2026-07-01T12:00:60Z", "UTC", None),
    # Past year 9999 once in UTC: a reject, not an exception that fails the batch.
    ("9999-12-31T23:00:00-05:00", "UTC", None),
    ("1000-01-01T00:30:00+01:00", "UTC", None),
])
def test_event_time_is_normalised_to_utc(text, tz, expected):
    assert parse_event_time(text, tz) == expected
