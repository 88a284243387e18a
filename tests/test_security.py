"""Secure by default: settings that would weaken TLS stop the job with one clear message before
it connects, a MySQL Connector/J too old to honour sslMode is refused, and the admin account's
credentials come from setup_db's own environment or terminal, never from the job's .env."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios
import time
import zipfile
from pathlib import Path

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import run_job

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers


def assert_one_clear_refusal(done: subprocess.CompletedProcess, message: str, secret: str):
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    assert message in output, output[-3000:]
    assert sum(" ERROR " in line for line in output.splitlines()) == 1, output[-3000:]
    assert "Traceback" not in output and "\tat org." not in output and "\tat com." not in output
    assert secret not in output


@pytest.mark.parametrize("env, message", [
    ({"JDBC_URL_OPTIONS": "useSSL=false"}, "JDBC_URL_OPTIONS may not set useSSL: TLS is set only"),
    ({"JDBC_URL_OPTIONS": "useCompression=true&TRUSTSERVERCERTIFICATE=true"},
     "JDBC_URL_OPTIONS may not set TRUSTSERVERCERTIFICATE"),
    ({"JDBC_URL_OPTIONS": "allowLocalInfile=true"},
     "JDBC_URL_OPTIONS may not set allowLocalInfile: use MYSQL_BULK_LOAD"),
    ({"JDBC_URL_OPTIONS": "useCompression"}, "JDBC_URL_OPTIONS must be key=value pairs"),
    ({"MYSQL_HOST": "192.0.2.10", "MYSQL_SSL_MODE": "DISABLED"},
     "MYSQL_SSL_MODE=DISABLED towards 192.0.2.10, which is not a loopback address"),
    ({"MYSQL_HOST": "192.0.2.10", "MYSQL_SSL_MODE": "REQUIRED"},
     "MYSQL_SSL_MODE=REQUIRED towards 192.0.2.10, which is not a loopback address"),
])
def test_settings_that_weaken_tls_stop_the_job(tmp_path, database, env, message):
    (tmp_path / "data").mkdir()
    done = run_job(database.job_env(**env), "--source", str(tmp_path / "data"), "--checkpoint",
                   str(tmp_path / "ck"), "--once")
    assert_one_clear_refusal(done, message, database.password)
    assert "MYSQL_ALLOW_UNVERIFIED_TLS=yes" in done.stderr or "JDBC_URL_OPTIONS" in message


def _class_file(name: str) -> bytes:
    """The smallest valid class `name` (extends Object, no members): enough to be loaded."""
    def utf8(text: str) -> bytes:
        return b"\x01" + struct.pack(">H", len(text)) + text.encode()

    pool = [b"\x07\x00\x02", utf8(name.replace(".", "/")), b"\x07\x00\x04",
            utf8("java/lang/Object")]
    return (b"\xca\xfe\xba\xbe" + struct.pack(">HHH", 0, 52, len(pool) + 1) + b"".join(pool)
            + struct.pack(">HHHHHHH", 0x0021, 1, 3, 0, 0, 0, 0))


def fake_driver_jar(path: Path, class_name: str, version: str) -> Path:
    """A jar whose manifest says it is `version` of the driver `class_name` (built here, so
    no old driver needs downloading)."""
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n"
                     f"Implementation-Version: {version}\r\n\r\n")
        jar.writestr(class_name.replace(".", "/") + ".class", _class_file(class_name))
    return path


def test_mysql_connector_j_before_8_0_13_is_refused_before_connecting(tmp_path, database):
    jar = fake_driver_jar(tmp_path / "mysql-connector-java-8.0.12.jar",
                          "com.mysql.cj.jdbc.Driver", "8.0.12")
    (tmp_path / "data").mkdir()
    env = database.job_env(JDBC_DRIVER_JAR=str(jar), JDBC_DRIVER_CLASS="com.mysql.cj.jdbc.Driver")
    done = run_job(env, "--source", str(tmp_path / "data"), "--checkpoint", str(tmp_path / "ck"),
                   "--once")
    assert_one_clear_refusal(done, "MySQL Connector/J 8.0.12 is older than 8.0.13: it ignores"
                                   " sslMode", database.password)
    assert "connected to" not in done.stderr


# -- setup_db's admin credentials ----------------------------------------------------------

def setup_db_env(database, env_file: Path, **extra: str) -> dict[str, str]:
    env = database.job_env(PIPELINE_ENV_FILE=str(env_file), **extra)
    # The job's settings come from the .env file in these tests, as in real use.
    names = ("MYSQL_HOST", "MYSQL_PORT", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD",
             "MYSQL_SSL_MODE", "MYSQL_REPORT_USER", "MYSQL_REPORT_PASSWORD")
    with env_file.open("a") as f:
        f.writelines(f"{name}={env.pop(name)}\n" for name in names)
    return env


def test_admin_credentials_are_never_read_from_dotenv(tmp_path, database, mysql_server):
    env_file = tmp_path / ".env"
    env_file.write_text(f"MYSQL_ADMIN_USER={mysql_server.user}\n"
                        f"MYSQL_ADMIN_PASSWORD={mysql_server.password}\n")
    env = setup_db_env(database, env_file)
    ignored = subprocess.run([PYTHON, "-m", "pipeline.ops.setup_db"], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=120)
    assert ignored.returncode == 2, ignored.stderr
    assert "holds MYSQL_ADMIN_USER and MYSQL_ADMIN_PASSWORD: ignored" in ignored.stderr
    assert "no admin password: set MYSQL_ADMIN_PASSWORD in this command's environment" \
        in ignored.stderr
    done = subprocess.run([PYTHON, "-m", "pipeline.ops.setup_db"], cwd=ROOT,
                          env={**env, "MYSQL_ADMIN_USER": mysql_server.user,
                               "MYSQL_ADMIN_PASSWORD": mysql_server.password},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert database.password not in done.stdout + done.stderr


def test_admin_password_is_asked_for_on_a_terminal(tmp_path, database, mysql_server):
    env = setup_db_env(database, tmp_path / ".env", MYSQL_ADMIN_USER=mysql_server.user)
    master, slave = os.openpty()

    def own_terminal():  # getpass reads from the controlling terminal, /dev/tty
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([PYTHON, "-m", "pipeline.ops.setup_db"], cwd=ROOT, env=env,
                            stdin=slave, stdout=slave, stderr=slave, preexec_fn=own_terminal)
    os.close(slave)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"password of" not in seen:  # typed too early, getpass would flush it
            assert time.monotonic() < deadline and proc.poll() is None, seen
            seen += os.read(master, 4096)
        os.write(master, mysql_server.password.encode() + b"\n")
        assert proc.wait(timeout=120) == 0
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's last user has gone
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert f"password of {mysql_server.user} at 127.0.0.1".encode() in seen
    assert b"database " + database.name.encode() + b" ready" in seen, seen
    if mysql_server.password:
        assert mysql_server.password.encode() not in seen  # not echoed
