"""Issue 22, the checks: a value can cost its row only, a header is read by name or the file
is refused, and a quoted value is stored byte for byte. Against the real job (Spark's file
source, the driver and Spark-task routes) and the real database; what should land comes from
Python's csv module, never from the job.

  A. `+24:00`, `-24:00`, `+99:00` as a UTC offset stopped the stream on every restart and
     made `pipeline.ops.rebuild` die; now each is its row's `bad_event_time`.
  B. A header after a blank line or Excel's `sep=,`, in another column order, was rejected
     as a row and the data read in the standard order (user ids stored as event ids).
  C. A CR LF inside a quoted field was stored as LF.
"""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import run_job

HEADER = "event_id,user_id,product_id,event_type,price,event_time"
REORDERED = "user_id,event_id,product_id,event_type,price,event_time"
ROUTES = {"driver": [], "spark": ["--driver-batch-max-bytes", "0"]}
IMPOSSIBLE_OFFSETS = ["+24:00", "-24:00", "+99:00"]


def run(database, source: Path, checkpoint: Path, *args: str,
        env: dict[str, str] | None = None) -> str:
    done = run_job(database.job_env(**(env or {})), "--source", str(source), "--checkpoint",
                   str(checkpoint), "--once", *args)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def reconcile(database) -> None:
    check = subprocess.run([PYTHON, "-m", "pipeline.ops.reconcile"], cwd=ROOT,
                           env=database.job_env(), capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


def events(database) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in database.query(
        "SELECT event_id, user_id, product_id, CAST(price AS CHAR) FROM events")}


def write_offsets_folder(source: Path) -> None:
    source.mkdir()
    (source / "events_1.csv").write_text(f"{HEADER}\na1,u1,p1,view,1.00,2026-01-31T12:00:00Z\n")
    bad = [f"x{i},u1,p1,view,1.00,2026-01-31T12:00:00{offset}"
           for i, offset in enumerate(IMPOSSIBLE_OFFSETS)]
    (source / "events_2.csv").write_text("\n".join(
        [HEADER, *bad, "a2,u1,p1,view,1.00,2026-01-31T12:00:00+05:30"]) + "\n")
    # Behind the bad file: on main it never landed, the stream stopped before it.
    (source / "events_3.csv").write_text(f"{HEADER}\na3,u1,p1,view,1.00,2026-01-31T12:00:00Z\n")


def assert_offsets_landed(database) -> None:
    assert set(events(database)) == {"a1", "a2", "a3"}
    assert database.query("SELECT line_number, reason FROM events_rejected"
                          " ORDER BY line_number") == [(2, "bad_event_time"),
                                                       (3, "bad_event_time"),
                                                       (4, "bad_event_time")]
    assert database.query("SELECT count(*) FROM ingest_files WHERE status = 'loaded'") == [(3,)]


@pytest.mark.parametrize("route", ROUTES)
def test_impossible_utc_offsets_cost_their_rows_only(tmp_path, database, route):
    source = tmp_path / "data"
    write_offsets_folder(source)
    output = run(database, source, tmp_path / "ck", *ROUTES[route])  # one file per batch
    assert output.count(f"({route})") == 3, output[-3000:]
    assert_offsets_landed(database)
    reconcile(database)


def test_rebuild_of_a_folder_with_impossible_offsets_finishes(tmp_path, database):
    source = tmp_path / "data"
    write_offsets_folder(source)
    rebuilt = subprocess.run([PYTHON, "-m", "pipeline.ops.rebuild", "--from", str(source),
                              "--no-progress"], cwd=ROOT, env=database.job_env(),
                             capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0, (rebuilt.stdout + rebuilt.stderr)[-4000:]
    assert "Traceback" not in rebuilt.stderr, rebuilt.stderr[-4000:]
    assert_offsets_landed(database)


def csv_events(path: Path) -> dict[str, tuple]:
    """event_id -> (user_id, product_id, price) as Python's csv reads the file: lines before
    the header skipped, the header's names deciding which value is which."""
    rows = [r for r in csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline=""))
            if r and r != ["sep=", ""]]
    names = rows[0]
    found = {}
    for row in rows[1:]:
        value = dict(zip(names, row, strict=True))
        found.setdefault(value["event_id"], (value["user_id"], value["product_id"],
                                             value["price"]))
    return found


@pytest.mark.parametrize("route", ROUTES)
def test_a_header_after_a_blank_line_or_sep_is_read_by_name(tmp_path, database, route):
    source = tmp_path / "data"
    source.mkdir()
    rows = "u1,e1,p1,view,1.00,2026-01-31T12:00:00Z\nu1,e2,p2,view,2.00,2026-01-31T12:00:00Z\n"
    (source / "events_1_blank.csv").write_text(f"\n{REORDERED}\n{rows}")
    (source / "events_2_sep.csv").write_bytes(
        f"sep=,\r\n{REORDERED},note\r\nu2,f1,p1,view,3.00,2026-01-31T12:00:00Z,n\r\n"
        "u2,f2,p2,purchase,4.00,2026-01-31T12:00:00Z,\r\n".encode())
    (source / "events_3_partial.csv").write_text(
        "event_id,user,product_id,event_type,price,event_time\n"
        "g1,u1,p1,view,1.00,2026-01-31T12:00:00Z\n")
    run(database, source, tmp_path / "ck", *ROUTES[route])

    expected = {**csv_events(source / "events_1_blank.csv"),
                **csv_events(source / "events_2_sep.csv")}
    assert set(expected) == {"e1", "e2", "f1", "f2"}
    assert events(database) == expected  # never a user id stored as an event id
    files = {Path(f).name: (s, r) for f, s, r in database.query(
        "SELECT source_file, status, status_reason FROM ingest_files")}
    assert files == {"events_1_blank.csv": ("loaded", None),
                     "events_2_sep.csv": ("loaded", None),
                     "events_3_partial.csv": ("quarantined", "bad_header")}
    detail = database.query("SELECT status_detail FROM ingest_files WHERE status_reason ="
                            " 'bad_header'")[0][0]
    assert "has no column user_id" in detail, detail
    assert database.query("SELECT line_number, reason FROM events_rejected") == [
        (None, "bad_header")]
    reconcile(database)


@pytest.mark.parametrize("route, args", [
    ("driver", []), ("streamed, LOAD DATA", ["--driver-batch-max-bytes", "1"]),
    ("streamed, INSERT", ["--driver-batch-max-bytes", "1"])])
def test_line_ends_inside_quotes_are_stored_as_written(tmp_path, database, route, args):
    source = tmp_path / "data"
    source.mkdir()
    path = source / "events_1.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(HEADER.split(","))
        writer.writerow(["c1", "line one\r\nline two", "p1", "view", "1.00",
                         "2026-01-31T12:00:00Z"])
        writer.writerow(["c2", "u2", "a\r\n\r\nb\nc", "view", "2.00", "2026-01-31T12:00:00Z"])
    assert b"one\r\nline" in path.read_bytes()
    env = {"MYSQL_BULK_LOAD": "off"} if route == "streamed, INSERT" else {}
    output = run(database, source, tmp_path / "ck", *args, env=env)
    assert ("(driver, streamed" in output) == bool(args), output[-3000:]
    assert events(database) == csv_events(path)
    assert events(database)["c1"][0] == "line one\r\nline two"
    reconcile(database)
