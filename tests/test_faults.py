"""A database that goes away, a network that misbehaves, a checkpoint that is lost: the
job retries or stops clearly, and afterwards every event is in MySQL exactly once."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest

from pipeline.config import MySQLSettings
from pipeline.ops.setup_db import setup_database
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import Database
from tests.support.jobs import Server
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job
from tests.support.mariadb_server import MariaDBServer
from tests.support.tcp_proxy import TcpProxy

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def files_committed(db: Database) -> int:
    return db.query("SELECT count(*) FROM ingest_files")[0][0]


def assert_exactly_once(db: Database, source) -> int:
    ids = events_in_db(db)
    expected = expected_events(source)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    assert files_committed(db) == len(list(source.glob("events_*.csv")))
    return len(ids)


@pytest.fixture
def own_server(tmp_path):
    """A throwaway MariaDB this test may stop, with the pipeline's database and user."""
    with MariaDBServer(tmp_path / "server") as server:  # started by the with statement
        db = Database(Server(server.host, server.port, server.admin_user,
                             server.admin_password), "shop", "pipeline", "outage-test-pw")
        setup_database(MySQLSettings(host=server.host, port=server.port, database=db.name,
                                     user=db.user, password=db.password, ssl_mode="DISABLED",
                                     ssl_ca=None), server.admin_user, server.admin_password)
        yield server, db


@pytest.mark.slow
def test_thirty_second_outage_is_ridden_out_with_backoff(tmp_path, own_server):
    server, db = own_server
    source, checkpoint, log = tmp_path / "data", tmp_path / "ck", tmp_path / "job.log"
    run_generator(source, "--files", "3", "--seed", "21")
    env = db.job_env(MYSQL_RETRY_ATTEMPTS="12", MYSQL_RETRY_BACKOFF_SECONDS="1",
                     MYSQL_RETRY_BACKOFF_MAX_SECONDS="8", MYSQL_CONNECT_TIMEOUT_SECONDS="3",
                     MYSQL_SOCKET_TIMEOUT_SECONDS="10")
    job = start_job(env, "--source", str(source), "--checkpoint", str(checkpoint), log_path=log)
    try:
        wait_for(lambda: files_committed(db) == 3, 180, "the first files")
        server.stop()
        outage_started = time.monotonic()
        run_generator(source, "--files", "4", "--seed", "22")  # arrive during the outage
        time.sleep(30)
        server.restart()
        outage = time.monotonic() - outage_started
        wait_for(lambda: files_committed(db) == 7, 180, "the files written during the outage")
        assert job.poll() is None, "the job should have ridden out the outage"
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
    text = log.read_text()
    retries = text.count("database unavailable")
    assert retries >= 2, text[-3000:]
    events = assert_exactly_once(db, source)
    print(f"outage {outage:.0f}s: {retries} retries logged, job continued, {events} events"
          " exactly once")


@pytest.mark.slow
def test_outage_past_the_retry_limit_stops_clearly_and_a_restart_resumes(tmp_path, own_server):
    server, db = own_server
    source, checkpoint = tmp_path / "data", tmp_path / "ck"
    run_generator(source, "--files", "2", "--seed", "23")
    env = db.job_env(MYSQL_RETRY_ATTEMPTS="2", MYSQL_RETRY_BACKOFF_SECONDS="1",
                     MYSQL_CONNECT_TIMEOUT_SECONDS="3")
    job = start_job(env, "--source", str(source), "--checkpoint", str(checkpoint),
                    log_path=tmp_path / "job.log")
    try:
        wait_for(lambda: files_committed(db) == 2, 180, "the first files")
        server.stop()
        run_generator(source, "--files", "2", "--seed", "24")
        assert job.wait(timeout=180) == 1
    finally:
        kill_group(job)
    text = (tmp_path / "job.log").read_text()
    assert "not written after 2 attempts" in text and "Nothing was lost" in text
    server.restart()
    done = run_job(env, "--source", str(source), "--checkpoint", str(checkpoint), "--once")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert_exactly_once(db, source)


@pytest.mark.slow
def test_latency_stalls_and_resets_mid_transaction_keep_exactly_once(tmp_path, database):
    source, checkpoint, log = tmp_path / "data", tmp_path / "ck", tmp_path / "job.log"
    with TcpProxy(database.server.host, database.server.port, latency_s=0.025) as proxy:
        env = database.job_env(MYSQL_PORT=str(proxy.port), MYSQL_RETRY_ATTEMPTS="20",
                               MYSQL_RETRY_BACKOFF_SECONDS="0.5",
                               MYSQL_RETRY_BACKOFF_MAX_SECONDS="2",
                               MYSQL_SOCKET_TIMEOUT_SECONDS="5")
        generator = subprocess.Popen([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                                      str(source), "--interval", "0.5", "--files", "40",
                                      "--seed", "25", "--quiet"], stdout=subprocess.DEVNULL)
        job = start_job(env, "--source", str(source), "--checkpoint", str(checkpoint),
                        log_path=log)
        faults = []
        try:
            wait_for(lambda: files_committed(database) >= 2, 180, "the first batches")
            for fault in ("reset", "stall", "reset_mid_transaction", "reset", "stall"):
                if fault == "reset":
                    proxy.reset_all()
                elif fault == "stall":
                    proxy.stall()
                    time.sleep(8)  # longer than the socket timeout
                    proxy.unstall()
                else:
                    proxy.reset_after_bytes(2000, existing=True)
                faults.append(fault)
                time.sleep(3)
            generator.wait(timeout=120)
            wait_for(lambda: files_committed(database) == 40, 240, "every file")
            assert job.poll() is None, log.read_text()[-3000:]
            job.send_signal(signal.SIGTERM)
            assert job.wait(timeout=120) == 0
        finally:
            generator.kill()
            kill_group(job)
    events = assert_exactly_once(database, source)
    retries = log.read_text().count("database unavailable")
    print(f"network faults {faults} with 50 ms round trip: {retries} retries,"
          f" {events} events exactly once")


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_lost_checkpoint_loads_nothing_twice(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "ck"
    run_generator(source, "--files", "3", "--seed", "26")
    first = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), "--once", "--max-files-per-trigger", "3")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    before = database.query("SELECT * FROM events ORDER BY event_id")
    shutil.rmtree(checkpoint)
    run_generator(source, "--files", "1", "--seed", "27")
    again = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), "--once", "--max-files-per-trigger", "4")
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert output.count("was already loaded by query") == 3
    after = database.query("SELECT * FROM events ORDER BY event_id")
    assert set(before) <= set(after) and len(after) - len(before) == len(
        expected_events(source)) - len(before)
    assert database.query("SELECT files_skipped, file_count FROM ingest_batches"
                          " ORDER BY committed_at DESC LIMIT 1") == [(3, 1)]
    assert_exactly_once(database, source)
