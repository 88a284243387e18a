"""Big batches are streamed: checked chunk by chunk on the driver while the database takes the
chunk before, through LOAD DATA LOCAL when the server allows it (JSON_TABLE otherwise).

Every test forces the streamed path with a tiny --driver-batch-max-bytes and a file of a few
chunks (20,000 events each), then compares the database with the file, value by value.
"""

from __future__ import annotations

import csv
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers

STREAMED = ["--driver-batch-max-bytes", "1024"]
# Values LOAD DATA's tab-separated format reads specially, and text beyond ASCII.
AWKWARD_USERS = ["tab\there", "back\\slash", "\\N", "\\t not a tab", "trailing\\",
                 "ünïcødé 😀", "it's", "comma, inside"]


def big_file(folder: Path, rows: int) -> Path:
    """A generated file of `rows` events, plus awkward user ids, duplicates and bad rows."""
    run_generator(folder, "--files", "1", "--events-per-file", str(rows), "--seed", "11",
                  "--null-user-rate", "0.05")
    path = next(folder.glob("events_*.csv"))
    with path.open(newline="") as f:
        first = next(csv.DictReader(f))
    with path.open("a", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        for i, user in enumerate(AWKWARD_USERS):
            out.writerow([f"awkward-{i}", user, "prod_1", "view", "1.50",
                          "2026-01-02T03:04:05.123456Z"])
        # Same id again: the first row in the file is the one kept.
        out.writerow([first["event_id"], "someone_else", "prod_2", "purchase", "9.99",
                      "2026-01-01T00:00:00Z"])
        out.writerow(["bad-price", "user_1", "prod_1", "view", "cheap", "2026-01-01T00:00:00Z"])
    return path


def expected_rows(path: Path) -> dict[str, tuple]:
    rows: dict[str, tuple] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["user_id"].strip() and r["event_id"] != "bad-price":
                rows.setdefault(r["event_id"], (r["user_id"], r["product_id"], r["event_type"],
                                                Decimal(r["price"])))
    return rows


def stored_rows(database) -> dict[str, tuple]:
    return {e: (u, p, t, price) for e, u, p, t, price in database.query(
        "SELECT event_id, user_id, product_id, event_type, price FROM events")}


@pytest.mark.parametrize("bulk_load, label", [("auto", "(driver, streamed as LOAD DATA)"),
                                              ("off", "(driver, streamed)")])
def test_streamed_batch_stores_every_value_exactly(tmp_path, database, bulk_load, label):
    source = tmp_path / "data"
    path = big_file(source, 45_000)
    done = run_job(database.job_env(MYSQL_BULK_LOAD=bulk_load), "--source", str(source),
                   "--checkpoint", str(tmp_path / "ck"), "--once", *STREAMED)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert label in output, output[-4000:]

    want = expected_rows(path)
    assert stored_rows(database) == want
    time = database.query("SELECT CAST(event_time AS CHAR) FROM events"
                          " WHERE event_id = 'awkward-0'")
    assert time == [("2026-01-02 03:04:05.123456",)]
    (read, written, rejected, duplicate), = database.query(
        "SELECT rows_read, rows_written, rows_rejected, rows_duplicate FROM ingest_files")
    assert written == len(want) and duplicate == 1
    assert read == written + rejected + duplicate
    assert ("bad-price", "bad_price") in {(raw.split(",")[0], reason) for raw, reason in
                                         database.query("SELECT raw_line, reason"
                                                        " FROM events_rejected")}
    check = subprocess.run([PYTHON, "-m", "pipeline.ops.reconcile"], cwd=ROOT,
                           env=database.job_env(), capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("moment", ["before_commit", "after_commit"])
def test_streamed_batch_killed_at_commit_is_stored_once(tmp_path, database, moment):
    """kill -9 just before or just after the commit of a streamed batch, then restart."""
    source, checkpoint = tmp_path / "data", tmp_path / "ck"
    path = big_file(source, 30_000)
    args = ["--source", str(source), "--checkpoint", str(checkpoint), "--once", *STREAMED]
    crashing = start_job(database.job_env(), *args, log_path=tmp_path / "crash.log",
                         crash=(moment, "batch=0"))
    assert crashing.wait(timeout=300) != 0
    crash_log = (tmp_path / "crash.log").read_text(errors="replace")
    assert "crash point: kill -9" in crash_log, crash_log[-4000:]
    committed = database.query("SELECT COUNT(*) FROM ingest_batches")[0][0]
    assert committed == (1 if moment == "after_commit" else 0)

    done = run_job(database.job_env(), *args)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    if moment == "after_commit":
        assert "replay" in output, output[-4000:]
    assert stored_rows(database) == expected_rows(path)
    assert database.query("SELECT COUNT(*) FROM ingest_files")[0][0] == 1
