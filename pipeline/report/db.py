"""The one way the command-line tools (setup_db, status, chart, reconcile) reach the database.

Same TLS settings as the job (MYSQL_SSL_MODE, MYSQL_SSL_CA), and the same proof afterwards that
the session really is encrypted: mysql-connector-python in REQUIRED mode quietly carries on in
plain text when the server offers no TLS, so a tool would otherwise send its statements (for
setup_db: CREATE USER ... IDENTIFIED BY) to anyone listening.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import mysql.connector
from mysql.connector.errors import InterfaceError

from pipeline.config import MySQLSettings
from pipeline.config import Settings
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.errors import TablesUnreadable

T = TypeVar("T")
# mysql-connector-python's error number when VERIFY_* meets a server without TLS.
_SERVER_HAS_NO_TLS = 2026


class NotEncrypted(InterfaceError):
    """TLS was asked for but the session is not encrypted: nothing was sent after the login."""


def connect(target: MySQLSettings, user: str, password: str, database: str | None = None):
    """A mysql-connector-python connection (autocommit) that honours MYSQL_SSL_MODE and
    MYSQL_SSL_CA, checked to be encrypted before it is handed out unless the mode is DISABLED.

    Before the check, only the login and the connector's own session set-up (character set,
    autocommit) have crossed the wire.
    """
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
    where = f"{target.host}:{target.port}"
    try:
        conn = mysql.connector.connect(**options)
    except InterfaceError as e:
        if e.errno == _SERVER_HAS_NO_TLS:
            raise NotEncrypted(msg=f"MYSQL_SSL_MODE={target.ssl_mode} but the server at {where}"
                                   " offers no TLS: refusing to connect without it") from None
        raise
    if target.ssl_mode == "DISABLED":
        return conn
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        row = cursor.fetchone()
        cursor.close()
    except mysql.connector.Error:
        conn.close()
        raise
    if not row or not row[1]:
        conn.close()
        raise NotEncrypted(msg=f"MYSQL_SSL_MODE={target.ssl_mode} but the session to {where} is"
                               " NOT encrypted (Ssl_cipher is empty; the server offers no TLS):"
                               " refusing to send anything over it")
    return conn


def read_pipeline_tables(read: Callable[..., T], settings: Settings | None = None) -> T:
    """`read(cursor)` on the job's database as configured in env/.env, for the reporting
    commands (status, reconcile, chart): a bad setting or a database error is one message.

    They read as MYSQL_REPORT_USER (SELECT only); without one, as the job's account, with a
    one-line warning on stderr. The job's status page passes its own `settings` (and is
    warned once, at start, by the job).
    """
    try:
        given = settings is not None
        settings = settings or load_settings()
        target = settings.mysql
        if settings.report_user:
            target = replace(target, user=settings.report_user,
                             password=settings.report_password)
        elif not given:
            print(f"warning: MYSQL_REPORT_USER is not set: reading with the job's account"
                  f" {target.user}, which may also write (python -m pipeline.ops.setup_db creates"
                  " a read-only one)", file=sys.stderr)
        conn = connect(target, target.user, target.password, target.database)
        try:
            return read(conn.cursor())
        finally:
            conn.close()
    except ConfigError as e:
        raise TablesUnreadable(str(e)) from None
    except mysql.connector.Error as e:
        raise TablesUnreadable(f"cannot read the pipeline tables: {e.msg}") from None


def read_or_report(read: Callable[..., T]) -> T | None:
    """`read_pipeline_tables(read)`, or None after printing why the tables cannot be read
    (the tools then exit 2)."""
    try:
        return read_pipeline_tables(read)
    except TablesUnreadable as e:
        print(e, file=sys.stderr)
        return None
