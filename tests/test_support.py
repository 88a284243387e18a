"""Tests for the test-support helpers: throwaway MariaDB servers and the fault-injecting proxy.

One private MariaDB (TLS, require_secure_transport=ON) for the whole module; the proxy tests
run in front of the shared server on 127.0.0.1:3306 (root, empty password, database test).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import mysql.connector
import pytest

from tests.support.mariadb_server import MariaDBServer
from tests.support.mariadb_server import make_tls_material
from tests.support.tcp_proxy import TcpProxy

SHARED = dict(host="127.0.0.1", port=3306, user="root", password="", database="test",
              connection_timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _query(conn, statement: str) -> list[tuple]:
    cur = conn.cursor()
    cur.execute(statement)
    rows = cur.fetchall()
    cur.close()
    return rows


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBServer]:
    base = tmp_path_factory.mktemp("mariadb")
    srv = MariaDBServer(base / "srv", tls=make_tls_material(base / "tls"),
                        require_secure_transport=True)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


# -- MariaDBServer ------------------------------------------------------------------------------

def test_tls_connection_verifies_own_ca(server: MariaDBServer) -> None:
    conn = mysql.connector.connect(**server.connect_args())
    try:
        (name, version), = _query(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert version.startswith("TLS")
    finally:
        conn.close()


def test_plaintext_is_refused(server: MariaDBServer) -> None:
    # MariaDB 10.11 reports require_secure_transport as a plain 1045 "Access denied".
    with pytest.raises(mysql.connector.Error):
        mysql.connector.connect(**server.connect_args(ssl_disabled=True))


def test_other_ca_is_rejected(server: MariaDBServer, tmp_path: Path) -> None:
    other = make_tls_material(tmp_path / "other")
    with pytest.raises(mysql.connector.Error, match="(?i)certificate"):
        mysql.connector.connect(**server.connect_args(ssl_ca=str(other.ca_cert)))


def test_root_and_anonymous_users_stay_off_tcp(server: MariaDBServer) -> None:
    users = server.sql("SELECT user, host FROM mysql.user ORDER BY user, host")
    assert ("admin", "%") in users
    assert not [u for u in users if u[0] == ""]
    assert [h for u, h in users if u == "root"] == ["localhost"]


def test_create_user_require_ssl(server: MariaDBServer) -> None:
    server.create_user("app", "app-pw", require_ssl=True)
    try:
        conn = mysql.connector.connect(**server.connect_args(user="app", password="app-pw"))
        assert _query(conn, "SELECT CURRENT_USER()") == [("app@%",)]
        conn.close()
        (grants,), = server.sql("SHOW GRANTS FOR 'app'@'%'")
        assert "REQUIRE SSL" in grants
    finally:
        server.sql("DROP USER 'app'@'%'")


def test_pause_and_resume(server: MariaDBServer) -> None:
    conn = mysql.connector.connect(**server.connect_args(), read_timeout=1)
    try:
        server.pause()
        try:
            with pytest.raises(mysql.connector.Error):
                _query(conn, "SELECT 1")
        finally:
            server.resume()
        # The timed-out connection is unusable; a fresh one must work again.
        conn.close()
        conn = mysql.connector.connect(**server.connect_args())
        assert _query(conn, "SELECT 1") == [(1,)]
    finally:
        conn.close()


def test_stop_restart_same_port_keeps_data(server: MariaDBServer) -> None:
    server.sql("CREATE DATABASE IF NOT EXISTS keep")
    server.sql("CREATE TABLE IF NOT EXISTS keep.t (id INT PRIMARY KEY)")
    server.sql("REPLACE INTO keep.t VALUES (42)")
    pid, port = server.pid, server.port
    server.stop()
    assert server.pid is None and not _alive(pid)
    with pytest.raises(mysql.connector.Error):
        mysql.connector.connect(**server.connect_args(connection_timeout=2))
    server.stop()  # idempotent
    server.restart()
    assert server.port == port and server.pid != pid
    conn = mysql.connector.connect(**server.connect_args())
    try:
        assert _query(conn, "SELECT id FROM keep.t") == [(42,)]
    finally:
        conn.close()


def test_kill_then_restart(server: MariaDBServer) -> None:
    pid = server.pid
    server.kill()
    assert not _alive(pid)
    server.restart()
    assert server.sql("SELECT id FROM keep.t") == [(42,)]


# -- TcpProxy -----------------------------------------------------------------------------------

@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 3306) as p:
        yield p


def _via(proxy: TcpProxy, **kw):
    return mysql.connector.connect(**(SHARED | dict(port=proxy.port) | kw))


def test_proxy_forwards_and_counts(proxy: TcpProxy) -> None:
    assert proxy.port not in (0, 3306)
    conn = _via(proxy)
    try:
        assert _query(conn, "SELECT DATABASE(), 1") == [("test", 1)]
        cur = conn.cursor()  # (creating a cursor costs a round trip itself in this connector)
        before = proxy.round_trips
        for _ in range(5):
            cur.execute("SELECT 1")
            assert cur.fetchall() == [(1,)]
        assert proxy.round_trips - before == 5
    finally:
        conn.close()
    assert proxy.connections_accepted == 1
    assert proxy.bytes_client_to_server > 0 and proxy.bytes_server_to_client > 0


def test_proxy_latency(proxy: TcpProxy) -> None:
    conn = _via(proxy)
    try:
        proxy.latency_s = 0.05
        t0 = time.monotonic()
        _query(conn, "SELECT 1")
        assert time.monotonic() - t0 >= 0.1
        # Chunks are delivered at arrival + latency, not one per delay: a big result is not
        # slowed in proportion to its number of chunks.
        t0 = time.monotonic()
        rows = _query(conn, "SELECT REPEAT('x', 1000) FROM seq_1_to_2000")
        assert len(rows) == 2000 and time.monotonic() - t0 < 1.0
        proxy.latency_s = 0
        t0 = time.monotonic()
        _query(conn, "SELECT 1")
        assert time.monotonic() - t0 < 0.1
    finally:
        conn.close()


def test_proxy_reset_all(proxy: TcpProxy) -> None:
    conn = _via(proxy)
    assert _query(conn, "SELECT 1") == [(1,)]
    proxy.reset_all()
    with pytest.raises(mysql.connector.Error):
        _query(conn, "SELECT 1")
    conn.close()
    conn = _via(proxy)  # new connections still work
    assert _query(conn, "SELECT 1") == [(1,)]
    conn.close()


def test_proxy_stall_and_unstall(proxy: TcpProxy) -> None:
    conn = _via(proxy, read_timeout=1)
    try:
        proxy.stall()
        with pytest.raises(mysql.connector.Error):
            _query(conn, "SELECT 1")
    finally:
        proxy.unstall()
        conn.close()
    conn = _via(proxy)
    assert _query(conn, "SELECT 1") == [(1,)]
    conn.close()


def test_proxy_reset_after_bytes(proxy: TcpProxy) -> None:
    conn = _via(proxy)
    try:
        proxy.reset_after_bytes(100, existing=True)
        with pytest.raises(mysql.connector.Error):
            _query(conn, "SELECT '" + "y" * 500 + "'")
    finally:
        conn.close()
    proxy.reset_after_bytes(None)
    conn = _via(proxy)
    assert _query(conn, "SELECT 1") == [(1,)]
    conn.close()


def test_proxy_refuse(proxy: TcpProxy) -> None:
    proxy.refuse = True
    with pytest.raises(mysql.connector.Error):
        _via(proxy)
    proxy.refuse = False
    conn = _via(proxy)
    assert _query(conn, "SELECT 1") == [(1,)]
    conn.close()
    assert proxy.connections_accepted == 2


def test_proxy_close_is_bounded_with_open_connections() -> None:
    p = TcpProxy("127.0.0.1", 3306).start()
    conn = _via(p)
    p.stall()
    t0 = time.monotonic()
    p.close()
    p.close()
    assert time.monotonic() - t0 < 5 and not p._thread.is_alive()
    conn.close()
