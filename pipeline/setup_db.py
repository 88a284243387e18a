"""Create the database, the tables and the job's least-privilege user (run once, as an admin).

Usage:
    python -m pipeline.setup_db            # uses MYSQL_* from env/.env for the job's user
                                           # and MYSQL_ADMIN_USER / MYSQL_ADMIN_PASSWORD

The admin connects to the same MYSQL_HOST/PORT with the same TLS settings. Idempotent:
running it again changes nothing but the user's password (set to MYSQL_PASSWORD).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from typing import Callable, TypeVar

import mysql.connector

from pipeline.config import ConfigError, MySQLSettings, load_environment, load_settings
from pipeline.sqlfiles import GRANTS_FILE, SCHEMA_FILE, read_statements

log = logging.getLogger(__name__)


def connect(target: MySQLSettings, user: str, password: str, database: str | None = None):
    """A mysql-connector-python connection honouring MYSQL_SSL_MODE / MYSQL_SSL_CA."""
    options = dict(host=target.host, port=target.port, user=user, password=password,
                   connection_timeout=target.connect_timeout_s, autocommit=True)
    if database:
        options["database"] = database
    if target.ssl_mode == "DISABLED":
        options["ssl_disabled"] = True
    else:
        if target.ssl_ca:
            options["ssl_ca"] = str(target.ssl_ca)
        options["ssl_verify_cert"] = target.ssl_mode in ("VERIFY_CA", "VERIFY_IDENTITY")
        options["ssl_verify_identity"] = target.ssl_mode == "VERIFY_IDENTITY"
    return mysql.connector.connect(**options)


T = TypeVar("T")


class TablesUnreadable(Exception):
    """A reporting command could not read the pipeline tables; the message says why."""


def read_pipeline_tables(read: Callable[..., T]) -> T:
    """`read(cursor)` on the job's database as configured in env/.env, for the reporting
    commands (status, reconcile, chart): a bad setting or a database error is one message."""
    try:
        settings = load_settings()
        conn = connect(settings.mysql, settings.mysql.user, settings.mysql.password,
                       settings.mysql.database)
        try:
            return read(conn.cursor())
        finally:
            conn.close()
    except ConfigError as e:
        raise TablesUnreadable(str(e)) from None
    except mysql.connector.Error as e:
        raise TablesUnreadable(f"cannot read the pipeline tables: {e.msg}") from None


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def setup_database(target: MySQLSettings, admin_user: str, admin_password: str,
                   user_host: str = "%") -> None:
    """Database, tables, user and grants; safe to run any number of times."""
    conn = connect(target, admin_user, admin_password)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(target.database)}"
                    " CHARACTER SET utf8mb4")
        cur.execute(f"USE {quote_identifier(target.database)}")
        for statement in read_statements(SCHEMA_FILE):
            cur.execute(statement)
        if target.user != admin_user:
            if not re.fullmatch(r"[A-Za-z0-9_.$-]{1,80}", target.user + user_host.replace("%", "")):
                raise ValueError(f"MYSQL_USER {target.user!r}: use letters, digits and _ . $ -")
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
                        (target.user, user_host, target.password))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s",
                        (target.user, user_host, target.password))
            account = f"'{target.user}'@'{user_host}'"
            for statement in read_statements(GRANTS_FILE, database=target.database, user=account):
                cur.execute(statement)
        log.info("database %s ready on %s:%d (tables, user %s with least privilege)",
                 target.database, target.host, target.port, target.user)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create database, tables and the job's user.")
    parser.add_argument("--user-host", default="%",
                        help="host part of the job's account (default: %(default)s)")
    parser.add_argument("--ping", action="store_true",
                        help="only check that the admin can connect (exit 0) or not (exit 1)")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="keep trying to connect this long first (a server starting up)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        settings = load_settings()
    except ConfigError as e:
        log.error("%s", e)
        return 2
    env = load_environment()
    admin_user = env.get("MYSQL_ADMIN_USER", "root")
    admin_password = env.get("MYSQL_ADMIN_PASSWORD", "")
    deadline = time.monotonic() + args.wait
    while True:
        try:
            connect(settings.mysql, admin_user, admin_password).close()
            break
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
    try:
        setup_database(settings.mysql, admin_user, admin_password, args.user_host)
    except mysql.connector.Error as e:
        log.error("setting up the database as %s failed: %s", admin_user, e.msg)
        return 2
    except ValueError as e:
        log.error("%s", e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
