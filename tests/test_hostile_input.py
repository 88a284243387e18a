"""Hostile names and files in the drop folder: every good row lands once, every bad line or
file is recorded with its reason, nothing stops the stream, and reconcile checks each file
against its own bytes. Expected rows come from Python's csv module, not from the job."""

from __future__ import annotations

import csv
import gzip
import os
import random
import subprocess
from pathlib import Path

from pipeline.contract import FILE_REASONS
from pipeline.contract import REJECT_REASONS
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import run_job

HEADER = ["event_id", "user_id", "product_id", "event_type", "price", "event_time"]
SEED = 1301
HOSTILE_NAMES = ["a?b", "a#b", "100%", "a b", "äöü", "%20x", "%2Fy", "it's", 'say "hi"', "-x",
                 "n" * 239, "line\nbreak"]


def write_csv(path: Path, rows: list[list[str]], header: bool = True) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(HEADER)
        writer.writerows(rows)


def good_rows(rng: random.Random, prefix: str, count: int) -> list[list[str]]:
    return [[f"{prefix}-{i}", f"u{rng.randrange(1000)}", f"p{rng.randrange(100)}",
             rng.choice(["view", "purchase"]), f"{rng.randrange(1, 9999)}.{rng.randrange(100):02d}",
             "2026-02-01T10:00:00Z"] for i in range(count)]


def expected_events(folder: Path) -> dict[str, list[str]]:
    """event_id -> row for every valid row, read by the csv module (first id wins)."""
    events: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.stat(follow_symlinks=False).st_mtime):
        # Only regular files are read; one of hundreds of MB holds no valid row here.
        if path.name.startswith("events_") and path.name.endswith(".csv") and path.is_file() \
                and not path.is_symlink() and path.stat().st_size < 50_000_000:
            with path.open(newline="", encoding="utf-8", errors="strict") as f:
                try:
                    rows = list(csv.reader(f))
                except (UnicodeDecodeError, csv.Error):
                    continue
            for row in rows[1:] if rows and rows[0] == HEADER else rows:
                if len(row) == 6 and row[1].strip() and row[0] and row[3] in ("view", "purchase"):
                    events.setdefault(row[0], row)
    return events


def build_folder(source: Path, outside: Path) -> dict[str, str]:
    """The drop folder; returns name -> the whole-file reason expected for bad files."""
    rng = random.Random(SEED)
    print(f"hostile corpus seed {SEED}")
    source.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        write_csv(source / f"events_{name}.csv", good_rows(rng, f"name{i}", 21))
    # Standard CSV as any writer produces it: doubled quotes and a quoted line end.
    write_csv(source / "events_rfc4180.csv", [
        ["q-1", 'ha "ha" ha', "p1", "view", "1.00", "2026-02-01T10:00:00Z"],
        ["q-2", "u2", '{"type": "Point"}', "view", "2.00", "2026-02-01T10:00:00Z"],
        ["q-3", "two\nlines", "p,3", "purchase", "3.00", "2026-02-01T10:00:00Z"],
        ["q-4", "u4", "p4", "view", "4.00", "2026-02-01T10:00:00Z"]])
    (source / "events_empty.csv").write_bytes(b"")
    (source / "events_gzip.csv").write_bytes(gzip.compress(b"\x00\x01binary" * 5000))
    with (source / "events_one_huge_line.csv").open("wb") as f:  # 200 MB, no line end
        block = b"y" * (1 << 20)
        for _ in range(200):
            f.write(block)
    junk = "".join(rng.choice("abc,;") for _ in range(16500))
    (source / "events_long_lines.csv").write_text(
        ",".join(HEADER) + "\n" + "\n".join(junk for _ in range(1300)) + "\n"
        + "long-ok,u1,p1,view,1.00,2026-02-01T10:00:00Z\n")
    (source / "events_dir.csv").mkdir()
    os.mkfifo(source / "events_fifo.csv")
    secret = outside / "secret.env"
    secret.write_text("MYSQL_PASSWORD=never-in-the-database\n")
    (source / "events_link.csv").symlink_to(secret)
    for i, path in enumerate(sorted(source.iterdir())):
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i), follow_symlinks=False)
    return {"events_dir.csv": "not_a_regular_file", "events_fifo.csv": "not_a_regular_file",
            "events_link.csv": "symlink"}


def snapshot(database) -> tuple:
    return tuple(database.query(f"SELECT * FROM {table} ORDER BY 1, 2")
                 for table in ("events", "events_rejected", "ingest_files", "ingest_batches"))


def reconcile(database, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pipeline.ops.reconcile", *args], cwd=ROOT,
                          env=database.job_env(), capture_output=True, text=True, timeout=300)


def test_hostile_folder_loads_every_good_row_once_and_records_every_bad_file(tmp_path,
                                                                             database):
    source = tmp_path / "data"
    bad_files = build_folder(source, tmp_path)
    expected = expected_events(source)
    args = ["--source", str(source), "--checkpoint", str(tmp_path / "ck"), "--once"]

    done = run_job(database.job_env(), *args, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]

    stored = {r[0]: list(r) for r in database.query(
        "SELECT event_id, user_id, product_id, event_type, CAST(price AS CHAR),"
        " DATE_FORMAT(event_time, '%Y-%m-%dT%H:%i:%sZ') FROM events")}
    assert stored == expected
    assert stored["q-1"][1] == 'ha "ha" ha' and stored["q-3"][1:3] == ["two\nlines", "p,3"]
    files = {Path(name[len("file:"):]).name: (status, reason, read) for name, status, reason, read
             in database.query("SELECT source_file, status, status_reason, rows_read"
                               " FROM ingest_files")}
    for name in HOSTILE_NAMES:
        assert files[f"events_{name}.csv"] == ("loaded", None, 21), name
    for name, reason in bad_files.items():
        assert files[name][:2] == ("quarantined", reason), name
    assert files["events_empty.csv"] == ("loaded", None, 0)
    assert files["events_one_huge_line.csv"] == ("loaded", None, 1)
    reasons = dict(database.query(
        "SELECT reason, count(*) FROM events_rejected GROUP BY reason"))
    assert set(reasons) <= set(REJECT_REASONS) | set(FILE_REASONS), reasons
    assert reasons["line_too_long"] == 1301  # 1300 junk lines + the 200 MB line
    assert reasons["invalid_utf8"] >= 1
    assert database.query("SELECT max(length(raw_line)) FROM events_rejected"
                          " WHERE reason = 'line_too_long'") == [(1000,)]
    whole = database.query("SELECT count(*) FROM events_rejected WHERE line_number IS NULL")
    assert whole == [(len(bad_files),)]
    for (text,) in database.query("SELECT coalesce(raw_line, '') FROM events_rejected"):
        assert "never-in-the-database" not in text

    check = reconcile(database)
    assert check.returncode == 0, check.stdout + check.stderr
    on_disk = len(files) - len(bad_files)
    assert f"{on_disk} compared with their bytes on disk" in check.stdout, check.stdout

    before = snapshot(database)
    again = run_job(database.job_env(), *args, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert snapshot(database) == before

    # A file appended to after it was loaded is not read again, and reconcile names it.
    late = "late-1,u1,p1,view,1.00,2026-02-01T10:00:00Z\r\n"
    with (source / "events_a b.csv").open("a", newline="") as f:
        f.write(late)
    check = reconcile(database)
    assert check.returncode == 1, check.stdout
    assert f"events_a b.csv: appended to after it was loaded ({len(late)} bytes more" \
        in check.stdout


def test_reconcile_sees_a_planted_loss(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    write_csv(source / "events_one.csv", good_rows(random.Random(SEED), "one", 5))
    write_csv(source / "events_two.csv", good_rows(random.Random(SEED + 1), "two", 5))
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once")
    assert done.returncode == 0, done.stderr[-3000:]
    assert reconcile(database).returncode == 0
    # As the old path bug did: a file recorded as loaded with nothing read from it.
    database.query("UPDATE ingest_files SET rows_read = 0, rows_written = 0, file_lines = 6"
                   " WHERE source_file LIKE '%events_one.csv'")
    database.query("DELETE FROM events WHERE event_id LIKE 'one-%'")
    # And a file overwritten after it was loaded.
    write_csv(source / "events_two.csv", good_rows(random.Random(SEED + 2), "two", 5))
    check = reconcile(database)
    assert check.returncode == 1, check.stdout
    assert "events_one.csv: recorded as loaded with 0 rows, but it has 5 data line(s)" \
        in check.stdout
    assert "events_two.csv: changed after it was loaded" in check.stdout
