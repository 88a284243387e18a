"""TLS against throwaway MariaDB servers of the test's own: one that requires secure transport
(own CA, server certificate for localhost/127.0.0.1), one whose certificate names another host
only, and one without TLS at all. The job and the command-line tools must verify the server and
refuse a session that is not encrypted."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import mysql.connector
import pytest

from pipeline.config import MySQLSettings
from pipeline.ops.setup_db import setup_database
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import Database
from tests.support.jobs import Server
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.mariadb_server import MariaDBServer
from tests.support.mariadb_server import make_tls_material

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca_and_server_cert(folder: Path) -> None:
    folder.mkdir(parents=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=folder)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server-key.pem", "-out", "server.csr", cwd=folder)
    (folder / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", "server-cert.pem",
            cwd=folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """A mariadbd with require_secure_transport=ON, stopped by its pid afterwards."""
    base = tmp_path_factory.mktemp("tls")
    make_ca_and_server_cert(base / "certs")
    make_ca_and_server_cert(base / "other-ca")
    datadir, port = base / "data", free_port()
    subprocess.run([shutil.which("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}",
                    "--user=root", "--auth-root-authentication-method=normal",
                    "--skip-test-db"], check=True, capture_output=True, timeout=120)
    certs = base / "certs"
    server = subprocess.Popen(
        [shutil.which("mariadbd"), "--no-defaults", f"--datadir={datadir}", "--user=root",
         f"--socket={base}/mysqld.sock", f"--port={port}", "--bind-address=127.0.0.1",
         "--skip-name-resolve", f"--pid-file={base}/mysqld.pid", f"--log-error={base}/err.log",
         "--innodb-buffer-pool-size=32M", f"--ssl-ca={certs}/ca.pem",
         f"--ssl-cert={certs}/server-cert.pem", f"--ssl-key={certs}/server-key.pem",
         "--require-secure-transport=ON"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                admin = mysql.connector.connect(unix_socket=f"{base}/mysqld.sock", user="root",
                                                autocommit=True)
                break
            except mysql.connector.Error:
                assert server.poll() is None, (base / "err.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "throwaway mariadbd did not start"
                time.sleep(0.5)
        cur = admin.cursor()
        cur.execute("CREATE USER 'admin'@'%' IDENTIFIED BY 'admin-pw'")
        cur.execute("GRANT ALL ON *.* TO 'admin'@'%' WITH GRANT OPTION")
        yield {"port": port, "ca": certs / "ca.pem", "wrong_ca": base / "other-ca" / "ca.pem",
               "admin": admin}
        admin.close()
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def tls_database(tls_server) -> Database:
    server = Server("127.0.0.1", tls_server["port"], "admin", "admin-pw")
    db = Database(server, "tls_shop", "pipeline", "tls-secret-pw", "reporter", "tls-report-pw")
    settings = MySQLSettings(host=server.host, port=server.port, database=db.name, user=db.user,
                             password=db.password, ssl_mode="VERIFY_CA",
                             ssl_ca=tls_server["ca"])
    setup_database(settings, server.user, server.password, report_user=db.report_user,
                   report_password=db.report_password)
    return db


def run_tls_job(db: Database, tmp_path: Path, **env: str):
    source = tmp_path / "data"
    if not source.exists():
        run_generator(source, "--files", "2", "--seed", "7", "--null-user-rate", "0")
    return run_job(db.job_env(**env), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once")


def test_verify_ca_connects_encrypted_and_writes(tls_server, tls_database, tmp_path):
    done = run_tls_job(tls_database, tmp_path, MYSQL_SSL_MODE="VERIFY_CA",
                       MYSQL_SSL_CA=str(tls_server["ca"]))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "over TLSv1." in output
    cur = tls_server["admin"].cursor()
    cur.execute("SELECT count(*) FROM tls_shop.events")
    assert cur.fetchone()[0] == 42
    assert tls_database.password not in output


def test_verify_identity_checks_the_name_in_the_certificate(tls_server, tls_database, tmp_path):
    done = run_tls_job(tls_database, tmp_path, MYSQL_SSL_MODE="VERIFY_IDENTITY",
                       MYSQL_SSL_CA=str(tls_server["ca"]))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


@pytest.mark.parametrize("env, message", [
    ({"MYSQL_SSL_MODE": "VERIFY_CA", "MYSQL_SSL_CA": "WRONG"}, "not signed by MYSQL_SSL_CA"),
    ({"MYSQL_SSL_MODE": "DISABLED"}, "server that requires TLS"),
    # A driver option that would silently turn TLS off never reaches the driver.
    ({"MYSQL_SSL_MODE": "REQUIRED", "JDBC_URL_OPTIONS": "useSsl=false"},
     "JDBC_URL_OPTIONS may not set useSsl"),
])
def test_without_verified_tls_the_job_refuses_clearly(tls_server, tls_database, tmp_path, env,
                                                      message):
    if env.get("MYSQL_SSL_CA") == "WRONG":
        env = {**env, "MYSQL_SSL_CA": str(tls_server["wrong_ca"])}
    done = run_tls_job(tls_database, tmp_path, **env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert message in output, output[-3000:]
    assert "Traceback" not in output and tls_database.password not in output


# -- the command-line tools ----------------------------------------------------------------

def run_tool(db: Database, module: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.ops.<module>` with the database's settings (and `env` on top)."""
    return subprocess.run([PYTHON, "-m", f"pipeline.ops.{module}", *args], cwd=ROOT,
                          env=db.job_env(**env), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def test_tools_read_over_verified_tls_as_the_reporting_account(tls_server, tls_database,
                                                               tmp_path):
    verified = dict(MYSQL_SSL_MODE="VERIFY_IDENTITY", MYSQL_SSL_CA=str(tls_server["ca"]))
    # Real (empty) folders: status rightly fails on a source or checkpoint that does not exist.
    (tmp_path / "data").mkdir()
    (tmp_path / "ck").mkdir()
    runs = [
        run_tool(tls_database, "status", "--json", "--source", str(tmp_path / "data"),
                 "--checkpoint", str(tmp_path / "ck"), **verified),
        run_tool(tls_database, "reconcile", **verified),
        run_tool(tls_database, "chart", "--output", str(tmp_path / "chart.png"), **verified),
    ]
    for done in runs:
        assert done.returncode == 0, done.args[2:] + [done.stderr[-2000:]]
        assert "MYSQL_REPORT_USER is not set" not in done.stderr, done.stderr
    # And it is that account: with a wrong password for it, they are refused.
    refused = run_tool(tls_database, "reconcile", MYSQL_REPORT_PASSWORD="wrong", **verified)
    assert refused.returncode == 2
    assert "Access denied for user 'reporter'" in refused.stderr, refused.stderr
    # Under the job's settings but another CA, nothing is read.
    other_ca = run_tool(tls_database, "status", MYSQL_SSL_MODE="VERIFY_CA",
                        MYSQL_SSL_CA=str(tls_server["wrong_ca"]))
    assert other_ca.returncode == 2 and "certificate" in other_ca.stderr.lower(), \
        other_ca.stderr
    assert "Traceback" not in other_ca.stderr


def test_setup_db_over_tls_makes_accounts_that_require_it(tls_server, tls_database):
    env = dict(MYSQL_SSL_MODE="VERIFY_CA", MYSQL_SSL_CA=str(tls_server["ca"]),
               MYSQL_ADMIN_USER="admin", MYSQL_ADMIN_PASSWORD="admin-pw")
    done = run_tool(tls_database, "setup_db", **env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "admin-pw" not in done.stdout + done.stderr
    cur = tls_server["admin"].cursor()
    cur.execute("SELECT user, host, ssl_type FROM mysql.user WHERE user IN"
                " ('pipeline', 'reporter') ORDER BY user")
    # The server skips name resolution, so it sees this machine's client as 127.0.0.1.
    assert cur.fetchall() == [("pipeline", "127.0.0.1", "ANY"), ("reporter", "127.0.0.1", "ANY")]


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    """A MariaDB without any TLS, with the pipeline's database and accounts (made in plain
    text, which the loopback address allows), and a log of every statement it receives."""
    base = tmp_path_factory.mktemp("plain")
    with MariaDBServer(base / "server") as server:
        db = Database(Server(server.host, server.port, server.admin_user, server.admin_password),
                      "shop", "pipeline", "plain-job-pw", "reporter", "plain-report-pw")
        setup_database(MySQLSettings(host=server.host, port=server.port, database=db.name,
                                     user=db.user, password=db.password, ssl_mode="DISABLED",
                                     ssl_ca=None), server.admin_user, server.admin_password,
                       report_user=db.report_user, report_password=db.report_password)
        log = base / "general.log"
        server.sql("SET GLOBAL general_log_file = %s", (str(log),))
        server.sql("SET GLOBAL general_log = ON")
        yield server, db, log


@pytest.mark.parametrize("mode", ["REQUIRED", "VERIFY_CA"])
def test_tools_refuse_a_server_without_tls(plain_server, tls_server, mode):
    server, db, log = plain_server
    logged_before = log.stat().st_size
    env = dict(MYSQL_SSL_MODE=mode, MYSQL_SSL_CA=str(tls_server["ca"]))
    for module, args in (("status", ()), ("reconcile", ()), ("chart", ("--output", "/dev/null"))):
        done = run_tool(db, module, *args, **env)
        assert done.returncode == 2, (module, done.stdout, done.stderr)
        assert f"MYSQL_SSL_MODE={mode}" in done.stderr and "offers no TLS" in done.stderr, \
            done.stderr
        assert "Traceback" not in done.stderr
    # setup_db would create an account with its password: it must not send that in plain text.
    done = run_tool(db, "setup_db", MYSQL_USER="newcomer", MYSQL_PASSWORD="never-in-clear",
                    MYSQL_ADMIN_USER=server.admin_user,
                    MYSQL_ADMIN_PASSWORD=server.admin_password, **env)
    assert done.returncode == 2, done.stderr
    assert "offers no TLS" in done.stderr and "Traceback" not in done.stderr
    sent = log.read_bytes()[logged_before:].decode(errors="replace")
    assert "never-in-clear" not in sent and "CREATE" not in sent and "newcomer" not in sent
    assert server.sql("SELECT count(*) FROM mysql.user WHERE user = 'newcomer'") == [(0,)]
    if mode == "REQUIRED":
        # mysql-connector-python did log in without TLS; the check stopped everything after.
        assert "Ssl_cipher" in sent


@pytest.fixture(scope="module")
def wrong_name_server(tmp_path_factory):
    """TLS-only MariaDB whose certificate names db.example.test only (not 127.0.0.1)."""
    base = tmp_path_factory.mktemp("wrong-name")
    tls = make_tls_material(base / "tls", hostnames=("db.example.test",), ips=())
    with MariaDBServer(base / "server", tls=tls, require_secure_transport=True) as server:
        db = Database(Server(server.host, server.port, server.admin_user, server.admin_password),
                      "shop", "pipeline", "wrong-name-job-pw", "reporter", "wrong-name-rep-pw")
        setup_database(MySQLSettings(host=server.host, port=server.port, database=db.name,
                                     user=db.user, password=db.password, ssl_mode="VERIFY_CA",
                                     ssl_ca=tls.ca_cert), server.admin_user,
                       server.admin_password, report_user=db.report_user,
                       report_password=db.report_password)
        yield tls, db


def job_and_status(server, tmp_path, mode: str, *status_args: str):
    """The job, then `status`, against the server whose certificate names another host."""
    tls, db = server
    env = dict(MYSQL_SSL_MODE=mode, MYSQL_SSL_CA=str(tls.ca_cert))
    done = run_tls_job(db, tmp_path, **env)
    return done.returncode, done.stdout + done.stderr, run_tool(db, "status", *status_args, **env)


def test_a_certificate_for_another_name_fails_verify_identity(wrong_name_server, tmp_path):
    code, output, tool = job_and_status(wrong_name_server, tmp_path, "VERIFY_IDENTITY")
    assert code == 2, output[-3000:]
    assert "does not name host '127.0.0.1'" in output, output[-3000:]
    assert "Traceback" not in output and "\tat org." not in output
    assert tool.returncode == 2 and "127.0.0.1" in tool.stderr, tool.stderr


def test_a_certificate_for_another_name_passes_verify_ca(wrong_name_server, tmp_path):
    code, output, tool = job_and_status(wrong_name_server, tmp_path, "VERIFY_CA", "--json",
                                        "--source", str(tmp_path / "data"), "--checkpoint",
                                        str(tmp_path / "ck"))
    assert code == 0, output[-3000:]
    assert "over TLSv1." in output
    assert tool.returncode == 0, tool.stderr
    assert '"events_total": 42' in tool.stdout


@pytest.mark.parametrize("mode", ["REQUIRED", "VERIFY_CA"])
def test_the_job_names_a_server_without_tls_as_a_tls_problem(plain_server, tls_server, mode,
                                                             tmp_path):
    _server, db, _log = plain_server
    done = run_tls_job(db, tmp_path, MYSQL_SSL_MODE=mode, MYSQL_SSL_CA=str(tls_server["ca"]))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "offers no TLS" in done.stderr and f"MYSQL_SSL_MODE={mode}" in done.stderr, \
        done.stderr[-3000:]
    assert "cannot reach" not in done.stderr and "Traceback" not in done.stderr
