"""Create the database, the tables and the pipeline's accounts (run once, as an admin).

Usage:
    python -m pipeline.ops.setup_db [--user-host HOST]

MYSQL_* from env/.env say where, and which accounts to create: the job's (MYSQL_USER) and,
when MYSQL_REPORT_USER is set, a read-only one for status, chart and reconcile. The admin
account is MYSQL_ADMIN_USER (default root) with MYSQL_ADMIN_PASSWORD, both read from this
command's own environment only, never from .env (the job must not hold them); without
MYSQL_ADMIN_PASSWORD the password is asked for on the terminal.

The admin connects to the same MYSQL_HOST/PORT with the same TLS settings as the job, and the
session is checked to be encrypted before anything is sent. Idempotent: running it again
resets the accounts' passwords and their grants to exactly those of the sql/ files.
"""

from __future__ import annotations

import getpass
import ipaddress
import logging
import os
import re
import socket
import sys
import time
from pathlib import Path

import mysql.connector
from dotenv import dotenv_values

from pipeline.cli import tool_parser
from pipeline.config import MySQLSettings
from pipeline.config import env_file_path
from pipeline.config import is_local_host
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.report.db import NotEncrypted
from pipeline.report.db import connect
from pipeline.write.schema import COLUMNS_QUERY
from pipeline.write.schema import EVENTS_GUARD_FILE
from pipeline.write.schema import GRANTS_FILE
from pipeline.write.schema import REPORT_GRANTS_FILE
from pipeline.write.schema import SCHEMA_FILE
from pipeline.write.schema import read_statements
from pipeline.write.schema import upgrade_statements

log = logging.getLogger(__name__)

ADMIN_USER, ADMIN_PASSWORD = "MYSQL_ADMIN_USER", "MYSQL_ADMIN_PASSWORD"
# UPDATE privilege the job's upsert needs on events (see sql/002_pipeline_user.sql).
EVENTS_UPDATE = {
    "mysql": "UPDATE (event_id)",
    "mariadb": "UPDATE (event_id, user_id, product_id, event_type, price, event_time)",
}
_USER = re.compile(r"[A-Za-z0-9_.$-]{1,80}")
_HOST = re.compile(r"[A-Za-z0-9_.%:-]{1,255}")


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _loopback_addresses(host: str) -> set[str]:
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()
    return {a for a in found if ipaddress.ip_address(a.split("%", 1)[0]).is_loopback}


def account_hosts(cursor, target: MySQLSettings, user_host: str | None) -> list[str]:
    """Host parts of the accounts: `user_host` when given; '%' for a remote server.

    For a server on this machine, the client host the server reports for this very session
    (USER()): 'localhost' when it resolves names, '127.0.0.1' with skip_name_resolve (MariaDB
    then matches TCP from 127.0.0.1 only to '127.0.0.1', never to 'localhost'), or a container
    gateway's address behind a published port. The job connects the same way, so it is seen
    the same. A name like `localhost` may reach the server over ::1 or 127.0.0.1: both then.
    """
    if user_host:
        return [user_host]
    if not is_local_host(target.host):
        return ["%"]
    cursor.execute("SELECT SUBSTRING_INDEX(USER(), '@', -1)")
    seen = str(cursor.fetchone()[0])
    hosts = [seen]
    try:
        seen_is_loopback = ipaddress.ip_address(seen).is_loopback
    except ValueError:
        seen_is_loopback = False
    if seen_is_loopback:
        hosts += sorted(_loopback_addresses(target.host) - {seen})
    return hosts


def _create_account(cursor, database: str, user: str, password: str, hosts: list[str],
                    require_ssl: bool, grants: Path, events_update: str) -> None:
    require = "SSL" if require_ssl else "NONE"
    for host in hosts:
        cursor.execute(f"CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s REQUIRE {require}",
                       (user, host, password))
        cursor.execute(f"ALTER USER %s@%s IDENTIFIED BY %s REQUIRE {require}",
                       (user, host, password))
        # From nothing each time, so a re-run also removes grants of an earlier version
        # (table-wide UPDATE on events) or added by hand.
        cursor.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))
        for statement in read_statements(grants, database=database, user=f"'{user}'@'{host}'",
                                         events_update=events_update):
            cursor.execute(statement)
    try:
        cursor.execute("SELECT Host FROM mysql.user WHERE User = %s", (user,))
        others = sorted({h.decode() if isinstance(h, (bytes, bytearray)) else str(h)
                         for (h,) in cursor.fetchall()} - set(hosts))
    except mysql.connector.Error:
        others = []  # an admin who may not read mysql.user
    for host in others:
        log.warning("account '%s'@'%s' exists too (an earlier set-up?) with its own password"
                    " and grants: DROP USER it if nothing uses it", user, host)


def setup_database(target: MySQLSettings, admin_user: str, admin_password: str,
                   user_host: str | None = None, report_user: str = "",
                   report_password: str = "") -> list[tuple[str, str]]:
    """Database, tables, accounts and grants; safe to run any number of times.

    The job's account (target.user): SELECT and INSERT on the four tables, plus the column
    UPDATE its upsert needs on events (sql/002_pipeline_user.sql). The reporting account, if a
    name is
    given: SELECT on the four tables (sql/003_report_user.sql). Both REQUIRE SSL unless
    MYSQL_SSL_MODE is DISABLED. Returns the (user, host) accounts made.
    """
    wanted = [(u, p, f) for u, p, f in ((target.user, target.password, GRANTS_FILE),
                                         (report_user, report_password, REPORT_GRANTS_FILE))
              if u and u != admin_user]
    for user, password, _ in wanted:
        if not _USER.fullmatch(user):
            raise ValueError(f"account name {user!r}: use letters, digits and _ . $ -")
        if not password:
            raise ValueError(f"the password for {user} is empty: set MYSQL_PASSWORD /"
                             " MYSQL_REPORT_PASSWORD (scripts/setup.sh writes random ones)")
    if user_host is not None and not _HOST.fullmatch(user_host):
        raise ValueError(f"--user-host {user_host!r}: use letters, digits and _ . % : -")
    conn = connect(target, admin_user, admin_password)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}"
                    " CHARACTER SET utf8mb4")
        cur.execute(f"USE {quote_identifier(target.database)}")
        for statement in read_statements(SCHEMA_FILE):
            cur.execute(statement)
        cur.execute(COLUMNS_QUERY)
        for statement in upgrade_statements({(t, c) for t, c in cur.fetchall()}):
            cur.execute(statement)
        hosts = account_hosts(cur, target, user_host)
        if not all(_HOST.fullmatch(h) for h in hosts):
            raise ValueError(f"unexpected client host {hosts}: pass --user-host")
        cur.execute("SELECT VERSION()")
        flavour = "mariadb" if "mariadb" in str(cur.fetchone()[0]).lower() else "mysql"
        if flavour == "mariadb":
            for statement in read_statements(EVENTS_GUARD_FILE):
                cur.execute(statement)
        made = []
        for user, password, grants in wanted:
            _create_account(cur, target.database, user, password, hosts,
                            target.ssl_mode != "DISABLED", grants, EVENTS_UPDATE[flavour])
            made += [(user, host) for host in hosts]
        log.info("database %s ready on %s:%d (tables; accounts %s)", target.database,
                 target.host, target.port,
                 ", ".join(f"'{u}'@'{h}'" for u, h in made) or "none")
        return made
    finally:
        conn.close()


def _admin_credentials(settings) -> tuple[str, str] | None:
    """From this process's environment only; the password asked for on a terminal."""
    path = env_file_path()
    if path.is_file():
        in_file = [k for k in (ADMIN_USER, ADMIN_PASSWORD) if k in dotenv_values(path)]
        if in_file:
            log.warning("%s holds %s: ignored, and better removed (the job's configuration"
                        " must not hold admin credentials)", path, " and ".join(in_file))
    user = os.environ.get(ADMIN_USER, "").strip() or "root"
    if ADMIN_PASSWORD in os.environ:
        return user, os.environ[ADMIN_PASSWORD]
    if sys.stdin.isatty():
        return user, getpass.getpass(f"password of {user} at {settings.mysql.host}:"
                                     f"{settings.mysql.port}: ")
    log.error("no admin password: set %s in this command's environment (not in .env), or run"
              " it in a terminal to be asked", ADMIN_PASSWORD)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("pipeline.ops.setup_db",
                         "Create database, tables and the pipeline's accounts.")
    parser.add_argument("--user-host", default=None,
                        help="host part of the accounts (default: '%%' for a remote server; for"
                             " a local one, the client host the server sees, e.g. 127.0.0.1)")
    parser.add_argument("--ping", action="store_true",
                        help="only check that the admin can connect (exit 0) or not (exit 1)")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="keep trying to connect this long first (a server starting up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("mysql.connector").setLevel(logging.WARNING)  # its plugin chatter
    try:
        settings = load_settings()
    except ConfigError as e:
        log.error("%s", e)
        return 2
    admin = _admin_credentials(settings)
    if admin is None:
        return 2
    admin_user, admin_password = admin
    deadline = time.monotonic() + args.wait
    while True:
        try:
            connect(settings.mysql, admin_user, admin_password).close()
            break
        except NotEncrypted as e:
            if args.ping:
                return 1
            log.error("%s", e.msg)
            return 2
        except mysql.connector.Error as e:
            if args.ping:
                return 1
            if time.monotonic() >= deadline:
                log.error("cannot connect to %s:%d as %s: %s", settings.mysql.host,
                          settings.mysql.port, admin_user, e.msg)
                return 2
            time.sleep(1)
    if args.ping:
        return 0
    if not settings.report_user:
        log.info("MYSQL_REPORT_USER is not set: no reporting account (status, chart and"
                 " reconcile then read as the job's account)")
    try:
        setup_database(settings.mysql, admin_user, admin_password, args.user_host,
                       settings.report_user, settings.report_password)
    except mysql.connector.Error as e:
        log.error("setting up the database as %s failed: %s", admin_user, e.msg)
        return 2
    except ValueError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
