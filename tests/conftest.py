"""Shared fixtures: a real database per test and a local Spark session. The helpers that
run the real programs live in tests/support/jobs.py (the benchmark uses them too).

The database server defaults to 127.0.0.1:3306 as root (empty password); point the tests at
another MySQL/MariaDB (a container on a laptop) with TEST_MYSQL_HOST, TEST_MYSQL_PORT,
TEST_MYSQL_USER and TEST_MYSQL_PASSWORD. A test never skips for want of a database: it fails
and says how to provide one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import mysql.connector
import pytest

# `pipeline` and `tests.support` from this checkout, whatever the current directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.config import MySQLSettings  # noqa: E402 - after the sys.path line above
from pipeline.ops.setup_db import setup_database  # noqa: E402 - after the sys.path line above
from tests.support.jobs import PYTHON  # noqa: E402 - after the sys.path line above
from tests.support.jobs import Database  # noqa: E402 - after the sys.path line above
from tests.support.jobs import Server  # noqa: E402 - after the sys.path line above
from tests.support.jobs import drop_database  # noqa: E402 - after the sys.path line above
from tests.support.jobs import keep_temporary_files_in  # noqa: E402 - after the sys.path line

TEMPORARY_FILES = pytest.StashKey[Path]()

# Every Spark the tests start (the fixture's and the jobs') binds its driver and UI to loopback.
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"


def pytest_configure(config) -> None:
    """One folder for the temporary files of the programs the run starts, removed at its
    end (xdist's workers inherit it from the controller)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        # pytest's own tmp_path folders stay where they were, kept for a look after a failure.
        os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
        config.stash[TEMPORARY_FILES] = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
        keep_temporary_files_in(config.stash[TEMPORARY_FILES])


def pytest_unconfigure(config) -> None:
    if TEMPORARY_FILES in config.stash:
        shutil.rmtree(config.stash[TEMPORARY_FILES], ignore_errors=True)


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
        drop_database(mysql_server, db.name, accounts)


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
    from pipeline.job.session import ship_package

    ship_package(session)
    yield session
    session.stop()


@pytest.fixture
def sink(spark, database):
    """The job's sink, connected as the test database's job user; closed afterwards."""
    from pipeline.write.sink import MySQLSink
    from tests.support.jobs import job_settings

    s = MySQLSink(spark, job_settings(database))
    s.connect()
    yield s
    s.close()


def pytest_report_header(config) -> str:
    from tests.support.jobs import driver_under_test

    return f"JDBC driver: {driver_under_test()} (set TEST_JDBC_DRIVER=mariadb or mysql)"
