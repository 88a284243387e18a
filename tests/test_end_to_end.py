"""The real programs end to end: generator files -> spark_streaming.py -> MySQL."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC
from datetime import datetime
from decimal import Decimal

import pytest

from tests.support.jobs import driver_under_test
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def stored_events(database) -> dict[str, tuple]:
    rows = database.query("SELECT event_id, user_id, product_id, event_type, price,"
                          " DATE_FORMAT(event_time, '%Y-%m-%dT%H:%i:%s.%fZ') FROM events")
    return {r[0]: r[1:] for r in rows}


def as_stored(row: dict) -> tuple:
    instant = datetime.fromisoformat(row["event_time"].replace("Z", "+00:00"))
    return (row["user_id"], row["product_id"], row["event_type"], Decimal(row["price"]),
            instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def assert_conservation(database) -> None:
    bad = database.query("SELECT source_file FROM ingest_files"
                         " WHERE rows_read <> rows_written + rows_rejected + rows_duplicate")
    assert bad == []


def newest_commit(checkpoint):
    commits = [p for p in (checkpoint / "commits").iterdir() if p.name.isdigit()]
    return max(commits, key=lambda p: int(p.name))


def test_once_loads_exactly_the_valid_rows_and_a_replay_changes_nothing(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "checkpoint"
    run_generator(source, "--files", "5", "--seed", "1", "--null-user-rate", "0.1")
    expected = expected_events(source)
    total_rows = sum(1 for p in source.glob("events_*.csv") for _ in p.open()) - 5

    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(checkpoint), "--once", submit=True)
    assert done.returncode == 0, done.stderr[-4000:]
    # The driver of the matrix's run (TEST_JDBC_DRIVER) is the one the job really loaded.
    vendor = {"mariadb": "MariaDB Connector/J", "mysql": "MySQL Connector/J"}[driver_under_test()]
    assert f"(no TLS) with {vendor} " in done.stdout + done.stderr, done.stderr[-4000:]
    stored = stored_events(database)
    assert stored == {eid: as_stored(row) for eid, row in expected.items()}
    assert database.query("SELECT reason, count(*) FROM events_rejected GROUP BY reason") == [
        ("missing_user_id", total_rows - len(expected))]
    assert database.query("SELECT count(*), sum(rows_read) FROM ingest_files") == [
        (5, total_rows)]
    assert_conservation(database)
    batches = database.query("SELECT count(*) FROM ingest_batches")

    # A crash after the database commit but before Spark's: the batch runs again.
    newest = newest_commit(checkpoint)
    newest.unlink()
    (newest.parent / f".{newest.name}.crc").unlink(missing_ok=True)
    again = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), "--once", submit=True)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "already committed" in again.stdout + again.stderr  # spark-submit: python logs on stdout
    assert stored_events(database) == stored
    assert database.query("SELECT count(*) FROM ingest_batches") == batches
    assert newest.exists()


def test_kill_9_mid_stream_then_restart_keeps_every_row_once(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "checkpoint"
    run_generator(source, "--files", "12", "--seed", "2")
    expected = expected_events(source)
    # kill -9 right after batch 3 committed, before Spark recorded it: the restart must
    # recognise that batch as done and go on with the 8 files left.
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), log_path=tmp_path / "job.log",
                    crash=("after_commit", "batch=3"))
    try:
        assert job.wait(timeout=240) == -signal.SIGKILL, \
            (tmp_path / "job.log").read_text()[-3000:]
    finally:
        kill_group(job, signal.SIGKILL)
    committed_before = database.query("SELECT count(*) FROM ingest_files")[0][0]
    assert committed_before == 4

    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(checkpoint), "--once")
    assert done.returncode == 0, done.stderr[-4000:]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    assert database.query("SELECT count(*) FROM ingest_files") == [(12,)]
    assert_conservation(database)
    print(f"kill -9 after {committed_before} committed files; restart completed all 12,"
          f" {len(ids)} events, none lost or doubled")


def test_sigterm_stops_between_batches_with_exit_0(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "checkpoint"
    run_generator(source, "--files", "30", "--seed", "3")
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), log_path=tmp_path / "job.log")
    try:
        deadline = time.monotonic() + 240
        while database.query("SELECT count(*) FROM ingest_batches")[0][0] < 1:
            assert job.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        # As a service manager does: the whole process group, Spark's JVM included.
        os.killpg(job.pid, signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
    log = (tmp_path / "job.log").read_text()
    assert "stopped cleanly" in log and "Traceback" not in log
    files = database.query("SELECT count(*) FROM ingest_files")[0][0]
    batches = database.query("SELECT count(*) FROM ingest_batches")[0][0]
    assert files == batches  # one file per batch, every batch whole


def test_known_instants_round_trip_whatever_the_machine_time_zone(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    (source / "events_tz.csv").write_text(
        "event_id,user_id,product_id,event_type,price,event_time\n"
        "tz1,u1,p1,view,1.00,2026-03-29T01:30:00Z\n"
        "tz2,u1,p1,view,1.00,2026-03-29T03:30:00.250+02:00\n"
        "tz3,u1,p1,view,1.00,2026-10-25 02:30:00\n")
    done = run_job(database.job_env(TZ="America/New_York"), "--source", str(source),
                   "--checkpoint", str(tmp_path / "ck"), "--once")
    assert done.returncode == 0, done.stderr[-4000:]
    assert database.query("SELECT event_id, CAST(event_time AS CHAR) FROM events"
                          " ORDER BY event_id") == [
        ("tz1", "2026-03-29 01:30:00.000000"), ("tz2", "2026-03-29 01:30:00.250000"),
        ("tz3", "2026-10-25 02:30:00.000000")]


def test_startup_problems_end_with_one_clear_message(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    common = ["--source", str(source), "--checkpoint", str(tmp_path / "ck"), "--once"]
    cases = {
        "JDBC_DRIVER_JAR": database.job_env(JDBC_DRIVER_JAR="/nonexistent/driver.jar"),
        "MYSQL_SSL_MODE": database.job_env(MYSQL_SSL_MODE="SOMETIMES"),
        "MYSQL_USER is not set": database.job_env(MYSQL_USER=""),
        "refused the login": database.job_env(MYSQL_PASSWORD="wrong-" + database.password),
        "cannot reach": database.job_env(MYSQL_PORT="1"),
        "does not exist": database.job_env(),
    }
    for expected, env in cases.items():
        args = common if expected != "does not exist" else [
            "--source", str(tmp_path / "missing"), "--checkpoint", str(tmp_path / "ck"), "--once"]
        result = run_job(env, *args)
        output = result.stdout + result.stderr
        assert result.returncode == 2, (expected, output[-2000:])
        assert expected in output, (expected, output[-2000:])
        assert "Traceback" not in output and "\tat org." not in output, output[-2000:]
        assert database.password not in output
