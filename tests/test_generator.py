"""The data generator: file format, values, reproducibility, atomic files and a clean stop.

Everything runs against real files in tmp_path; the CLI is run in-process through `main` where
that suffices, and in a subprocess where signals and exit codes are the point.
"""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from datetime import timezone
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from data_generator import main  # noqa: E402 - after the sys.path line above
from pipeline.contract import DEFAULT_EVENT_TYPES  # noqa: E402 - after the sys.path line above
from pipeline.contract import EVENT_FIELDS  # noqa: E402 - after the sys.path line above
from pipeline.generate.events import EventFactory  # noqa: E402 - after the sys.path line above
from pipeline.generate.events import file_name_for  # noqa: E402 - after the sys.path line above
from pipeline.generate.events import write_events_file  # noqa: E402 - after the sys.path line above

NAME_RE = re.compile(r"^events_\d{8}T\d{6}_\d{6}Z_\d{4,}_[0-9a-f]{4}\.csv$")
START = "2026-01-31T12:00:00Z"


def generate(out: Path, *args: str) -> list[Path]:
    """Run the CLI in-process quickly; return the files it wrote, in name order."""
    assert main(["--output-dir", str(out), "--interval", "0", "--quiet", *args]) == 0
    return sorted(out.glob("events_*.csv"))


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        return header, [dict(zip(header, row, strict=True)) for row in reader]


def all_rows(paths: list[Path]) -> list[dict[str, str]]:
    return [row for path in paths for row in read_rows(path)[1]]


def leftovers(folder: Path) -> list[str]:
    """Anything but final event files: temp files, probes."""
    return [p.name for p in folder.iterdir() if not NAME_RE.match(p.name)]


# -- files ----------------------------------------------------------------------------------

def test_header_is_exact_and_each_file_has_the_requested_number_of_events(tmp_path):
    paths = generate(tmp_path, "--files", "3", "--events-per-file", "7")
    assert len(paths) == 3
    for path in paths:
        raw = path.read_bytes()
        assert raw.startswith(b"event_id,user_id,product_id,event_type,price,event_time\n")
        assert b"\r" not in raw
        header, rows = read_rows(path)
        assert tuple(header) == EVENT_FIELDS
        assert len(rows) == 7


def test_default_is_21_events_per_file(tmp_path):
    (path,) = generate(tmp_path, "--files", "1")
    assert len(read_rows(path)[1]) == 21


def test_zero_events_per_file_writes_header_only_files(tmp_path):
    (path,) = generate(tmp_path, "--files", "1", "--events-per-file", "0")
    assert path.read_text(encoding="utf-8") == ",".join(EVENT_FIELDS) + "\n"


def test_files_5_interval_0_writes_exactly_5_uniquely_named_files_in_order(tmp_path, capsys):
    assert main(["--output-dir", str(tmp_path), "--files", "5", "--interval", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    written = [Path(line.split()[1]).name for line in out if line.startswith("wrote ")]
    assert len(written) == 5
    assert all(re.fullmatch(r"wrote .+\.csv \(21 events, \d+ without user_id\)", line)
               for line in out[:5])
    assert out[-1].startswith("summary: 5 files, 105 events,")
    names = sorted(p.name for p in tmp_path.glob("events_*.csv"))
    assert len(set(names)) == 5
    assert all(NAME_RE.match(n) for n in names)
    assert names == written  # name order is write order
    assert leftovers(tmp_path) == []


def test_output_dir_is_created_if_missing(tmp_path):
    out = tmp_path / "a" / "b"
    assert len(generate(out, "--files", "2")) == 2


def test_file_name_format_and_order():
    t = datetime(2026, 11, 25, 3, 15, 2, 123456, tzinfo=UTC)
    assert file_name_for(t, 1) == "events_20261125T031502_123456Z_0001.csv"
    assert file_name_for(t, 12, "ab12") == "events_20261125T031502_123456Z_0012_ab12.csv"
    # A non-UTC clock still yields the UTC stamp.
    local = t.astimezone(timezone(timedelta(hours=5)))
    assert file_name_for(local, 1) == file_name_for(t, 1)
    later = [file_name_for(t + timedelta(microseconds=i), i + 1) for i in range(0, 2000, 7)]
    assert later == sorted(later)


def test_two_runs_into_one_folder_never_share_a_name(tmp_path):
    generate(tmp_path, "--files", "20", "--seed", "1")
    generate(tmp_path, "--files", "20", "--seed", "1")
    assert len(list(tmp_path.glob("events_*.csv"))) == 40


# -- reproducibility ------------------------------------------------------------------------

def test_same_seed_and_start_time_give_byte_identical_files(tmp_path):
    args = ("--files", "4", "--seed", "42", "--start-time", START)
    a = generate(tmp_path / "a", *args)
    b = generate(tmp_path / "b", *args)
    assert len(a) == len(b) == 4
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_same_seed_without_start_time_differs_only_in_event_time(tmp_path):
    a = all_rows(generate(tmp_path / "a", "--files", "2", "--seed", "5"))
    b = all_rows(generate(tmp_path / "b", "--files", "2", "--seed", "5"))
    drop_time = [{k: v for k, v in r.items() if k != "event_time"} for r in a]
    assert drop_time == [{k: v for k, v in r.items() if k != "event_time"} for r in b]


def test_different_seeds_differ(tmp_path):
    a = generate(tmp_path / "a", "--files", "2", "--seed", "1", "--start-time", START)
    b = generate(tmp_path / "b", "--files", "2", "--seed", "2", "--start-time", START)
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in b]


def test_without_seed_runs_differ(tmp_path):
    a = all_rows(generate(tmp_path / "a", "--files", "1"))
    b = all_rows(generate(tmp_path / "b", "--files", "1"))
    assert {r["event_id"] for r in a}.isdisjoint(r["event_id"] for r in b)


# -- values ---------------------------------------------------------------------------------

def test_null_user_rate_0_means_every_row_has_a_user(tmp_path):
    rows = all_rows(generate(tmp_path, "--files", "5", "--events-per-file", "100",
                             "--null-user-rate", "0"))
    assert len(rows) == 500 and all(r["user_id"] for r in rows)


def test_null_user_rate_1_means_no_row_has_a_user(tmp_path, capsys):
    assert main(["--output-dir", str(tmp_path), "--interval", "0", "--files", "3",
                 "--null-user-rate", "1"]) == 0
    out = capsys.readouterr().out
    assert "(21 events, 21 without user_id)" in out
    assert "summary: 3 files, 63 events, 63 without user_id," in out
    rows = all_rows(sorted(tmp_path.glob("events_*.csv")))
    assert len(rows) == 63 and all(r["user_id"] == "" for r in rows)


def test_default_null_user_rate_is_about_5_percent(tmp_path):
    rows = all_rows(generate(tmp_path, "--files", "20", "--events-per-file", "100"))
    empty = sum(1 for r in rows if not r["user_id"])
    # Binomial(2000, 0.05): mean 100, sd ~9.7; this band is > 5 sd wide on each side.
    assert 50 <= empty <= 160


def test_values_are_realistic_and_well_formed(tmp_path):
    rows = all_rows(generate(tmp_path, "--files", "10", "--events-per-file", "100",
                             "--seed", "3", "--users", "50", "--products", "20"))
    users = {r["user_id"] for r in rows if r["user_id"]}
    products = {r["product_id"] for r in rows}
    assert 1 < len(users) <= 50 and 1 < len(products) <= 20
    assert all(len(u) <= 64 and re.fullmatch(r"user_\d{4}", u) for u in users)
    assert all(re.fullmatch(r"prod_\d{4}", p) for p in products)
    assert all(uuid.UUID(r["event_id"]).version == 4 for r in rows)
    assert len({r["event_id"] for r in rows}) == len(rows)

    types = Counter(r["event_type"] for r in rows)
    assert set(types) <= set(DEFAULT_EVENT_TYPES)
    assert types.most_common(1)[0][0] == "view"
    assert types["purchase"] < types["add_to_cart"] < types["view"]

    price_of: dict[str, str] = {}
    for r in rows:
        assert re.fullmatch(r"\d+\.\d{2}", r["price"]), r["price"]
        assert Decimal("1.00") <= Decimal(r["price"]) <= Decimal("500.00")
        # One stable price per product.
        assert price_of.setdefault(r["product_id"], r["price"]) == r["price"]


def test_event_time_is_iso_utc_with_microseconds_and_close_to_now(tmp_path):
    before = datetime.now(UTC)
    rows = all_rows(generate(tmp_path, "--files", "2", "--seed", "1"))
    after = datetime.now(UTC)
    for r in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["event_time"])
        t = datetime.fromisoformat(r["event_time"].replace("Z", "+00:00"))
        assert t.utcoffset() == timedelta(0)
        assert before - timedelta(seconds=30) <= t <= after


def test_start_time_places_file_k_at_start_plus_k_intervals(tmp_path):
    start = datetime(2026, 1, 31, 12, tzinfo=UTC)
    factory = EventFactory(seed=9, start_time=start, interval=20)
    for k in range(3):
        times = [datetime.fromisoformat(r["event_time"].replace("Z", "+00:00"))
                 for r in factory.make_events(21, k)]
        assert times == sorted(times)
        lo = start + timedelta(seconds=20 * k)
        assert all(lo <= t < lo + timedelta(seconds=20) for t in times)


def test_event_factory_rows_have_exactly_the_schema_fields():
    rows = EventFactory(seed=1).make_events(5, 0)
    assert [tuple(r) for r in rows] == [EVENT_FIELDS] * 5
    assert all(isinstance(v, str) for r in rows for v in r.values())


# -- atomic files ---------------------------------------------------------------------------

def test_write_events_file_writes_the_final_name_only(tmp_path):
    rows = EventFactory(seed=1).make_events(3, 0)
    path = write_events_file(tmp_path, rows, "events_x.csv")
    assert path == tmp_path / "events_x.csv"
    assert [p.name for p in tmp_path.iterdir()] == ["events_x.csv"]
    assert read_rows(path)[1] == rows


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failure_midway_leaves_neither_final_nor_temp_file(tmp_path, error):
    rows = EventFactory(seed=1).make_events(10, 0)
    seen: list[str] = []

    def rows_then_failure():
        for i, row in enumerate(rows):
            if i == 5:
                # While writing, only the dot-prefixed temp file exists, in the same folder.
                seen.extend(p.name for p in tmp_path.iterdir())
                raise error("stop midway")
            yield row

    with pytest.raises(error):
        write_events_file(tmp_path, rows_then_failure(), "events_y.csv")
    assert seen == [".events_y.csv.tmp"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_complete_files_and_a_summary(tmp_path, sig):
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "data_generator.py"), "--output-dir", str(tmp_path),
         "--interval", "0.2", "--files", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = out.splitlines()[-1]
    assert summary.startswith("summary: ") and f"(stopped by {sig.name})" in summary

    paths = sorted(tmp_path.glob("events_*.csv"))
    assert len(paths) >= 2
    assert leftovers(tmp_path) == []
    for path in paths:
        header, rows = read_rows(path)
        assert tuple(header) == EVENT_FIELDS and len(rows) == 21
        assert path.read_bytes().endswith(b"Z\n")
    assert summary.startswith(f"summary: {len(paths)} files, {21 * len(paths)} events,")


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--files", "-1"], "--files"),
    (["--events-per-file", "-3"], "--events-per-file"),
    (["--interval", "-1"], "--interval"),
    (["--interval", "soon"], "--interval"),
    (["--null-user-rate", "1.5"], "--null-user-rate"),
    (["--null-user-rate", "-0.1"], "--null-user-rate"),
    (["--users", "0"], "--users"),
    (["--products", "-2"], "--products"),
    (["--seed", "x"], "--seed"),
    (["--start-time", "yesterday"], "--start-time"),
])
def test_bad_arguments_are_usage_errors(tmp_path, capsys, args, message):
    assert main(["--output-dir", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and f"error: argument {message}" in err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_dir_is_a_usage_error_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, str(ROOT / "data_generator.py"), "--output-dir", str(blocker / "sub"),
         "--files", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "error: argument --output-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
