"""Helpers the tests and the benchmark share: the database a test writes to, and the
real programs (generator, streaming job) run as a user runs them."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mysql.connector

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
SPARK_SUBMIT = str(Path(PYTHON).parent / "spark-submit")

# The JDBC driver every job and sink of the tests uses: TEST_JDBC_DRIVER=mariadb (the default,
# jars/ as the set-up leaves it) or mysql (MySQL Connector/J, fetched by setup.sh --for-tests).
MYSQL_TEST_JAR = ROOT / "jars" / "mysql-test" / "mysql-connector-j.jar"
MYSQL_DRIVER_ENV = {"JDBC_DRIVER_CLASS": "com.mysql.cj.jdbc.Driver",
                    "JDBC_DRIVER_JAR": str(MYSQL_TEST_JAR)}
DRIVERS = {"mariadb": {}, "mysql": MYSQL_DRIVER_ENV}


def keep_temporary_files_in(folder: Path) -> None:
    """Have every process started from here on (Spark's JVMs, the jobs, their Python) put
    its temporary files under `folder`, which the caller removes at its end: a job stopped
    with kill -9, as many tests do, leaves Spark's spark-*, blockmgr-* and liblz4 files and
    the job's pipeline-* folders behind."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(folder)
    os.environ["SPARK_LOCAL_DIRS"] = str(folder)
    # Read by spark-submit's launcher for the driver's JVM (java.io.tmpdir is not TMPDIR).
    options = os.environ.get("SPARK_SUBMIT_OPTS", "")
    os.environ["SPARK_SUBMIT_OPTS"] = f"{options} -Djava.io.tmpdir={folder}".strip()
    tempfile.tempdir = None  # this process's tempfile module reads TMPDIR again


def driver_under_test() -> str:
    """The driver the tests run with; a clear error for a name that is not one."""
    name = os.environ.get("TEST_JDBC_DRIVER", "mariadb")
    if name not in DRIVERS:
        raise SystemExit(f"TEST_JDBC_DRIVER={name!r}: use one of {', '.join(DRIVERS)}")
    return name


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
        env.update(DRIVERS[driver_under_test()])
        if self.report_user:
            env.update(MYSQL_REPORT_USER=self.report_user,
                       MYSQL_REPORT_PASSWORD=self.report_password)
        env.update(extra)
        return env


# -- running the real programs ------------------------------------------------------------

def run_generator(output_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                           str(output_dir), "--interval", "0", "--quiet", *args],
                          capture_output=True, text=True, timeout=120, check=True)


def run_job(env: dict[str, str], *args: str, submit: bool = False,
            submit_conf: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run spark_streaming.py to completion (python, or spark-submit with submit=True and
    any `submit_conf` as its --conf settings)."""
    conf = [f"--conf={key}={value}" for key, value in (submit_conf or {}).items()]
    launcher = [SPARK_SUBMIT, "--master", "local[2]", *conf] if submit else [PYTHON]
    return subprocess.run([*launcher, str(ROOT / "spark_streaming.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


CRASHING_JOB = Path(__file__).resolve().parent / "crashing_job.py"


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


def drop_database(server: Server, name: str, accounts: list[tuple[str, str]]) -> None:
    """Drop a test's database and its (user, host) accounts, as the server's admin."""
    conn = mysql.connector.connect(host=server.host, port=server.port, user=server.user,
                                   password=server.password, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        for user, host in accounts:
            cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
    finally:
        conn.close()
