"""Break things for real: kill the job over and over, look for the password everywhere,
try what the job's database user must not be able to do."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
import urllib.request

import mysql.connector
import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_job
from tests.support.jobs import start_job

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def committed_batches(database) -> int:
    return database.query("SELECT count(*) FROM ingest_batches")[0][0]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
def test_crash_loop_while_the_generator_writes(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "ck"
    generator = subprocess.Popen([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                                  str(source), "--interval", "0.5", "--seed", "11", "--quiet"],
                                 stdout=subprocess.DEVNULL)
    kills = {"random": 0, "before_commit": 0, "after_commit": 0}
    seed = 20261201
    rng = random.Random(seed)
    print(f"crash loop seed {seed}")
    try:
        for round_number in range(12):
            mode = ("random", "before_commit", "after_commit")[round_number % 3]
            crash = None if mode == "random" else (mode, f"rate=0.5,seed={seed + round_number}")
            before = committed_batches(database)
            job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                            str(checkpoint), log_path=tmp_path / "job.log", crash=crash)
            try:
                if mode == "random":
                    wait_for(lambda before=before: committed_batches(database) > before, 180,
                             "a batch")
                    time.sleep(rng.uniform(0, 2))
                    kill_group(job, signal.SIGKILL)
                else:
                    job.wait(timeout=180)  # the job kills itself at the crash point
                assert job.returncode == -signal.SIGKILL, job.returncode
                kills[mode] += 1
            finally:
                kill_group(job)
    finally:
        generator.send_signal(signal.SIGTERM)
        generator.wait(timeout=60)

    done = run_job(database.job_env(), "--source", str(source), "--checkpoint", str(checkpoint),
                   "--once", "--max-files-per-trigger", "50", timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    expected = expected_events(source)
    ids = events_in_db(database)
    files = len(list(source.glob("events_*.csv")))
    assert len(ids) == len(set(ids)), "an event was written twice"
    assert set(ids) == set(expected), (f"lost {len(set(expected) - set(ids))},"
                                       f" extra {len(set(ids) - set(expected))}")
    assert database.query("SELECT count(*) FROM ingest_files") == [(files,)]
    replays = (tmp_path / "job.log").read_text().count("already committed before a restart")
    print(f"crash loop: {sum(kills.values())} kill -9 ({kills}), {files} files,"
          f" {len(ids)} events compared with the files on disk: 0 lost, 0 duplicated;"
          f" {replays} replayed batch(es) recognised by the ledger")


def test_password_appears_nowhere(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "ck"
    subprocess.run([PYTHON, str(ROOT / "data_generator.py"), "--output-dir", str(source),
                    "--interval", "0", "--files", "3", "--quiet"], check=True, timeout=60)
    log_path = tmp_path / "job.log"
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), log_path=log_path)
    try:
        wait_for(lambda: committed_batches(database) >= 1, 180, "a batch")
        processes = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                                   text=True).stdout
        assert database.password not in processes
        ui = re.search(r"Spark UI (http://\S+)", log_path.read_text()).group(1)
        apps = json.load(urllib.request.urlopen(f"{ui}/api/v1/applications", timeout=10))
        environment = urllib.request.urlopen(
            f"{ui}/api/v1/applications/{apps[0]['id']}/environment", timeout=10).read().decode()
        assert "spark.sql.session.timeZone" in environment  # the page really was read
        assert database.password not in environment
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
    assert database.password not in log_path.read_text()
    for path in checkpoint.rglob("*"):
        if path.is_file():
            assert database.password.encode() not in path.read_bytes(), path


def test_job_user_may_only_read_and_append(database):
    conn = database.connect(admin=False)
    cur = conn.cursor()
    for statement in ("DROP TABLE events", "DELETE FROM events", "TRUNCATE TABLE ingest_batches",
                      "CREATE TABLE x (a INT)", "UPDATE ingest_files SET rows_read = 0",
                      "DELETE FROM ingest_batches"):
        with pytest.raises(mysql.connector.Error) as denied:
            cur.execute(statement)
        assert denied.value.errno in (1142, 1044), statement
    # The upsert (twice: the second time it meets its own row) works with the column grants.
    for _ in range(2):
        cur.execute("INSERT INTO events (event_id, user_id, product_id, event_type, price,"
                    " event_time) VALUES ('e1', 'u1', 'p1', 'view', 1.00,"
                    " '2026-01-01 00:00:00') ON DUPLICATE KEY UPDATE event_id = events.event_id")
    cur.execute("SHOW GRANTS")
    events_grant = [g for (g,) in cur.fetchall() if "`events`" in g]
    assert len(events_grant) == 1 and "UPDATE (" in events_grant[0], events_grant
    cur.execute("SELECT VERSION()")
    mariadb = "mariadb" in cur.fetchone()[0].lower()
    if not mariadb:
        # MySQL checks UPDATE on the assigned column only: no other column may change.
        assert "UPDATE (`event_id`)" in events_grant[0], events_grant
    # MariaDB wants UPDATE on every column the INSERT names, so there a trigger refuses any
    # UPDATE that changes a value (sql/004_events_guard.sql).
    for statement in ("UPDATE events SET price = 0", "UPDATE events SET user_id = 'x'"):
        with pytest.raises(mysql.connector.Error) as denied:
            cur.execute(statement)
        assert denied.value.errno == (1644 if mariadb else 1143), statement
    cur.execute("SELECT user_id, CAST(price AS CHAR) FROM events")
    assert cur.fetchall() == [("u1", "1.00")]
    cur.execute("SELECT count(*) FROM events")
    assert cur.fetchone() == (1,)
    conn.close()

    reporting = database.connect(report=True)
    report = reporting.cursor()
    for table in ("events", "events_rejected", "ingest_batches", "ingest_files"):
        report.execute(f"SELECT count(*) FROM {table}")
        report.fetchall()
    for statement in ("INSERT INTO ingest_batches (query_id, batch_id) VALUES ('q', 1)",
                      "UPDATE events SET event_id = event_id", "DELETE FROM events",
                      "DROP TABLE events", "CREATE TABLE x (a INT)"):
        with pytest.raises(mysql.connector.Error) as denied:
            report.execute(statement)
        assert denied.value.errno in (1142, 1044), statement
    reporting.close()
