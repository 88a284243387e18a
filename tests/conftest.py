"""Shared fixtures: a real database per test, a local Spark session, job runners.

The database server defaults to 127.0.0.1:3306 as root (empty password); point the tests at
another MySQL/MariaDB (a container on a laptop) with TEST_MYSQL_HOST, TEST_MYSQL_PORT,
TEST_MYSQL_USER and TEST_MYSQL_PASSWORD. A test never skips for want of a database: it fails
and says how to provide one.
"""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mysql.connector
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import MySQLSettings  # noqa: E402
from pipeline.setup_db import setup_database  # noqa: E402

PYTHON = sys.executable
# Every Spark the tests start (the fixture's and the jobs') binds its driver and UI to loopback.
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
SPARK_SUBMIT = str(Path(PYTHON).parent / "spark-submit")


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str


@dataclass(frozen=True)
class Database:
    """A fresh database with the pipeline's tables and its own least-privilege job user."""

    server: Server
    name: str
    user: str
    password: str
    # The read-only account of status, chart and reconcile ("" when not created).
    report_user: str = ""
    report_password: str = ""

    def connect(self, admin: bool = True, report: bool = False):
        user, password = ((self.report_user, self.report_password) if report
                          else (self.server.user, self.server.password) if admin
                          else (self.user, self.password))
        return mysql.connector.connect(host=self.server.host, port=self.server.port, user=user,
                                       password=password, database=self.name, autocommit=True)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall()
        finally:
            conn.close()

    def job_env(self, **extra: str) -> dict[str, str]:
        """Environment for running the job as this database's pipeline user."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "JDBC_"))}
        # As after `source .venv/bin/activate`: spark-submit finds Spark through python3.
        env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
        env["PYSPARK_PYTHON"] = PYTHON
        env.update(
            MYSQL_HOST=self.server.host,
            MYSQL_PORT=str(self.server.port),
            MYSQL_DATABASE=self.name,
            MYSQL_USER=self.user,
            MYSQL_PASSWORD=self.password,
            MYSQL_SSL_MODE="DISABLED",
            # Never read the developer's own .env during tests.
            PIPELINE_ENV_FILE=os.devnull,
            MYSQL_RETRY_BACKOFF_SECONDS="0.5",
        )
        if self.report_user:
            env.update(MYSQL_REPORT_USER=self.report_user,
                       MYSQL_REPORT_PASSWORD=self.report_password)
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def mysql_server() -> Server:
    """The server the tests use; fails with instructions if it does not answer."""
    server = Server(
        host=os.environ.get("TEST_MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("TEST_MYSQL_PORT", "3306")),
        user=os.environ.get("TEST_MYSQL_USER", "root"),
        password=os.environ.get("TEST_MYSQL_PASSWORD", ""),
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            mysql.connector.connect(host=server.host, port=server.port, user=server.user,
                                    password=server.password, connection_timeout=5).close()
            return server
        except mysql.connector.Error as e:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no MySQL/MariaDB at {server.host}:{server.port} as {server.user} ({e.msg})."
                    " Start one (here: start-stop-daemon --start --oknodo --background --exec"
                    " /usr/sbin/mariadbd) or set TEST_MYSQL_HOST/PORT/USER/PASSWORD.",
                    pytrace=False)
            time.sleep(1)


@pytest.fixture
def database(mysql_server: Server) -> Iterator[Database]:
    """#. Create database test_<id> with the schema and a pipeline user. #. Drop both after."""
    suffix = uuid.uuid4().hex[:10]
    db = Database(mysql_server, f"test_{suffix}", f"p_{suffix}", secrets.token_urlsafe(12),
                  f"r_{suffix}", secrets.token_urlsafe(12))
    settings = MySQLSettings(host=mysql_server.host, port=mysql_server.port, database=db.name,
                             user=db.user, password=db.password, ssl_mode="DISABLED",
                             ssl_ca=None)
    accounts = setup_database(settings, mysql_server.user, mysql_server.password,
                              report_user=db.report_user, report_password=db.report_password)
    try:
        yield db
    finally:
        conn = mysql.connector.connect(host=mysql_server.host, port=mysql_server.port,
                                       user=mysql_server.user, password=mysql_server.password,
                                       autocommit=True)
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
        for user, host in accounts:
            cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
        conn.close()


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the transform tests, configured like the job's."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", PYTHON)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("pipeline-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.files.minPartitionNum", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    from pipeline.job import ship_package

    ship_package(session)
    yield session
    session.stop()


# -- running the real programs ------------------------------------------------------------

def run_generator(output_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                           str(output_dir), "--interval", "0", "--quiet", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def run_job(env: dict[str, str], *args: str, submit: bool = False,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run spark_streaming.py to completion (python, or spark-submit with submit=True)."""
    launcher = [SPARK_SUBMIT, "--master", "local[2]"] if submit else [PYTHON]
    return subprocess.run([*launcher, str(ROOT / "spark_streaming.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


CRASHING_JOB = ROOT / "tests" / "support" / "crashing_job.py"


def start_job(env: dict[str, str], *args: str, log_path: Path,
              crash: tuple[str, str] | None = None) -> subprocess.Popen:
    """Start spark_streaming.py in its own process group (so a kill reaches the JVM too).

    `crash` = (moment, when) runs it through tests/support/crashing_job.py, which kills it
    with SIGKILL at that moment of a commit (see there).
    """
    log = open(log_path, "ab")
    program = [str(CRASHING_JOB), *crash, "--"] if crash else [str(ROOT / "spark_streaming.py")]
    return subprocess.Popen([PYTHON, *program, *args], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the job's whole process group (python + its JVM) and reap it."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def expected_events(folder: Path) -> dict[str, tuple]:
    """event_id -> row for every row with a non-empty user_id in the folder's CSV files."""
    rows = {}
    for path in sorted(folder.glob("events_*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row["user_id"].strip():
                    rows.setdefault(row["event_id"], row)
    return rows


def events_in_db(db: Database) -> list[str]:
    return [r[0] for r in db.query("SELECT event_id FROM events")]


def job_settings(db: Database, **overrides: str):
    """pipeline Settings for the job user of `db` (as the job would load them)."""
    from pipeline.config import load_settings

    return load_settings({**db.job_env(), **overrides})
