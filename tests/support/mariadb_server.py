"""Throwaway MariaDB servers (and TLS material for them) owned by a single test.

Each server gets its own datadir, unix socket and TCP port on 127.0.0.1; it never touches
port 3306 or the system datadir. Every wait is bounded and every error names the log file.
"""

from __future__ import annotations

import contextlib
import ctypes
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mysql.connector

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
# A smaller redo log than the 96M default makes install + first start ~2 s faster.
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]  # much faster than RSA
COMMON_ARGS = ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M"]


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _run(cmd: list[str], timeout: float = 60, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-2000:]
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {output}")
    return proc.stdout


def make_tls_material(directory: Path, hostnames=("localhost",), ips=("127.0.0.1",)) -> TlsMaterial:
    """A fresh CA (CN test-ca, 2 days) and a server key+cert it signed, for the given SANs.

    Call it again in another directory for an unrelated CA ("wrong CA" tests).
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    san = ",".join([f"DNS:{h}" for h in hostnames] + [f"IP:{i}" for i in ips])
    # Own config files so the system openssl.cnf cannot add or duplicate extensions.
    (d / "ca.cnf").write_text(
        "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN=test-ca\n"
        "[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\n"
    )
    common_name = hostnames[0] if hostnames else ips[0]
    (d / "server.cnf").write_text(
        f"[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nCN={common_name}\n"
        f"[v3_srv]\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    m = TlsMaterial(d / "ca.pem", d / "ca-key.pem", d / "server-cert.pem", d / "server-key.pem")
    _run(["openssl", "req", "-x509", "-new", *EC_KEY, "-nodes", "-days", "2",
          "-config", "ca.cnf", "-extensions", "v3_ca", "-keyout", m.ca_key.name,
          "-out", m.ca_cert.name], cwd=d)
    _run(["openssl", "req", "-new", *EC_KEY, "-nodes", "-config", "server.cnf",
          "-keyout", m.server_key.name, "-out", "server.csr"], cwd=d)
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", m.ca_cert.name,
          "-CAkey", m.ca_key.name,
          "-set_serial", str(secrets.randbits(63)), "-days", "2", "-extfile", "server.cnf",
          "-extensions", "v3_srv", "-out", m.server_cert.name], cwd=d)
    return m


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (never 3306)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 3306:
            return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: a crashed or killed pytest must not leave servers behind.
    # Caveat: fires when the *thread* that started the server exits, so start from a long-lived one.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)


class MariaDBServer:
    """A private mariadbd: `with MariaDBServer(tmp_path) as db: db.sql("SELECT 1")`."""

    host = "127.0.0.1"

    def __init__(self, base_dir: Path, port: int | None = None, tls: TlsMaterial | None = None,
                 require_secure_transport: bool = False, extra_args: Sequence[str] = ()) -> None:
        self.base_dir = Path(base_dir)
        self.datadir = self.base_dir / "data"
        self.socket = self.datadir / "mysqld.sock"
        # sun_path holds 108 bytes; deep pytest tmp dirs overflow it.
        if len(str(self.socket)) > 100:
            self.socket = Path(tempfile.mkdtemp(prefix="mdb-")) / "mysqld.sock"
        self.log_path = self.datadir / "error.log"
        self.port = port or free_port()
        if self.port == 3306:
            raise ValueError("port 3306 belongs to the shared server")
        self.tls = tls
        self.require_secure_transport = require_secure_transport
        self.extra_args = list(extra_args)
        self.admin_user = "admin"
        self.admin_password = secrets.token_hex(12)
        self._proc: subprocess.Popen | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> MariaDBServer:
        """Initialise the datadir (first time only), launch mariadbd and wait until it serves."""
        if self.pid is not None:
            raise RuntimeError(f"server on port {self.port} is already running (pid {self.pid})")
        fresh = not (self.datadir / "mysql").is_dir()
        if fresh:
            self._install()
        self._launch(timeout)
        if fresh:
            self._create_admin()
        return self

    def restart(self, timeout: float = 60) -> None:
        """Start again on the same port and datadir (after stop()/kill()), no re-initialisation."""
        self.stop()
        self._launch(timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (SIGKILL after `timeout` s) and reap. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)  # a paused server would never see the SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        """SIGKILL (a crash, no clean shutdown) and reap."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def pause(self) -> None:
        """SIGSTOP: sockets stay open, nothing answers.

        kill() returns before every thread has stopped; a query sent at once could still
        be answered. So wait until all threads show state T (at most a few seconds).
        """
        self._signal(signal.SIGSTOP)
        if self.pid is None:
            return
        tasks = Path(f"/proc/{self.pid}/task")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for task in tasks.iterdir():
                try:
                    # The state follows the ")" that ends the command name.
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
                except (OSError, IndexError):
                    pass  # a thread that just ended
            if states and all(state in ("T", "t") for state in states):
                return
            time.sleep(0.01)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def __enter__(self) -> MariaDBServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SQL ---------------------------------------------------------------------------------
    def sql(self, statement: str, params: tuple | None = None) -> list[tuple]:
        """Run one statement as root over the unix socket; rows (if any), autocommitted."""
        conn = mysql.connector.connect(unix_socket=str(self.socket), user="root", password="",
                                       autocommit=True, connection_timeout=10)
        try:
            cur = conn.cursor()
            cur.execute(statement, params)
            return cur.fetchall() if cur.with_rows else []
        finally:
            conn.close()

    def create_user(self, name: str, password: str, require_ssl: bool = False,
                    privileges: str = "ALL PRIVILEGES ON *.*") -> None:
        """CREATE USER name@'%' (REQUIRE SSL if asked) and GRANT `privileges` to it."""
        self.sql(f"CREATE USER %s@%s IDENTIFIED BY %s{' REQUIRE SSL' if require_ssl else ''}",
                 (name, "%", password))
        self.sql(f"GRANT {privileges} TO %s@%s", (name, "%"))

    def connect_args(self, **overrides: Any) -> dict[str, Any]:
        """mysql-connector kwargs for the TCP admin (verifying the CA when TLS is on)."""
        args: dict[str, Any] = dict(host=self.host, port=self.port, user=self.admin_user,
                                    password=self.admin_password, connection_timeout=10)
        if self.tls:
            args.update(ssl_ca=str(self.tls.ca_cert), ssl_verify_cert=True)
        return args | overrides

    # -- internals ---------------------------------------------------------------------------
    def _install(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        log = self.base_dir / "install-db.log"
        cmd = [INSTALL_DB, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
               "--auth-root-authentication-method=normal", "--skip-test-db", *COMMON_ARGS]
        with log.open("w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=120).returncode
        if rc != 0:
            raise RuntimeError(f"mariadb-install-db failed ({rc}); log {log}:\n{_tail(log)}")

    def _launch(self, timeout: float) -> None:
        cmd = [MARIADBD, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
               f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
               "--skip-name-resolve", f"--pid-file={self.datadir / 'mysqld.pid'}",
               f"--log-error={self.log_path}", "--skip-log-bin", *COMMON_ARGS]
        if self.tls:
            cmd += [f"--ssl-ca={self.tls.ca_cert}", f"--ssl-cert={self.tls.server_cert}",
                    f"--ssl-key={self.tls.server_key}"]
        if self.require_secure_transport:
            cmd.append("--require-secure-transport=ON")
        self._proc = subprocess.Popen(cmd + self.extra_args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                rc, self._proc = self._proc.returncode, None
                raise RuntimeError(f"mariadbd exited ({rc}) on port {self.port};"
                                   f" log {self.log_path}:\n"
                                   f"{_tail(self.log_path)}")
            try:
                self.sql("SELECT 1")
                return
            except mysql.connector.Error:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"mariadbd not ready after {timeout}s on port {self.port}; "
                                       f"log {self.log_path}:\n{_tail(self.log_path)}") from None
                time.sleep(0.1)

    def _create_admin(self) -> None:
        # Anonymous users would shadow real ones, and the passwordless root@127.0.0.1/::1/<host>
        # would make TCP auth tests meaningless: root stays on the socket only.
        for host in ("localhost", socket.gethostname(), "127.0.0.1", "::1"):
            self.sql("DROP USER IF EXISTS ''@%s", (host,))
            if host != "localhost":
                self.sql("DROP USER IF EXISTS 'root'@%s", (host,))
        self.sql("CREATE USER %s@%s IDENTIFIED BY %s", (self.admin_user, "%", self.admin_password))
        self.sql("GRANT ALL PRIVILEGES ON *.* TO %s@%s WITH GRANT OPTION", (self.admin_user, "%"))

    def _signal(self, sig: int) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("server is not running")
        self._proc.send_signal(sig)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"
