"""The throwaway MariaDB the bench owns, and the databases each contender writes to.

TLS is on but not required: our job connects with VERIFY_CA, while the plain design connects
in plain text, as the tutorial does. LOCAL INFILE is on for the LOAD DATA contender. The bench
itself (verification, polling, status counters) talks to the server as root over its unix
socket, so it never goes through the proxy of the slow-link scenario.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import mysql.connector

from pipeline.config import MySQLSettings
from pipeline.ops.setup_db import setup_database
from pipeline.write.schema import SCHEMA_FILE
from pipeline.write.schema import read_statements
from tests.support.mariadb_server import MariaDBServer
from tests.support.mariadb_server import make_tls_material

# Close to a stock MariaDB 10.11 (like the server of the reference measurements) rather than
# the test suite's small settings: the bulk scenario commits ~100 MB in one go. These come
# after the helper's own arguments, so they win.
SERVER_ARGS = ("--local-infile=1", "--innodb-buffer-pool-size=128M",
               "--innodb-log-file-size=96M", "--max-connections=200")


def events_ddl(nullable_user: bool = False) -> str:
    """Our `events` table as sql/001_schema.sql defines it, so every contender has the same
    column types; LOAD DATA keeps rows without a user, so its copy allows a NULL user_id."""
    ddl = next(s for s in read_statements(SCHEMA_FILE)
               if re.match(r"CREATE TABLE IF NOT EXISTS events\s*\(", s))
    if nullable_user:
        ddl = re.sub(r"(user_id\s+VARCHAR\(\d+\)\s+)NOT NULL", r"\1NULL", ddl)
    return ddl


@dataclass(frozen=True)
class Database:
    """One contender's database and the account it writes with."""

    name: str
    user: str
    password: str


class BenchServer:
    """Start with `with BenchServer(work_dir) as server:`; stopped (by pid) on exit."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.tls = None
        self.mariadb: MariaDBServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> BenchServer:
        self.tls = make_tls_material(self.work_dir / "tls")
        self.mariadb = MariaDBServer(self.work_dir / "mariadb", tls=self.tls,
                                     extra_args=SERVER_ARGS)
        try:
            self.mariadb.start(timeout=90)
        except BaseException:
            self.mariadb.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mariadb is not None:
            self.mariadb.stop()

    @property
    def port(self) -> int:
        return self.mariadb.port

    @property
    def pid(self) -> int | None:
        return self.mariadb.pid

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_cert

    # -- bench-side access (root over the unix socket) ----------------------------------------
    def connect(self, database: str | None = None):
        return mysql.connector.connect(unix_socket=str(self.mariadb.socket), user="root",
                                       password="", database=database, autocommit=True,
                                       connection_timeout=10)

    def query(self, sql: str, database: str | None = None, params: tuple = ()) -> list[tuple]:
        conn = self.connect(database)
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall() if cur.with_rows else []
        finally:
            conn.close()

    def version(self) -> str:
        return str(self.query("SELECT VERSION()")[0][0])

    def variables(self, *names: str) -> dict[str, str]:
        marks = ", ".join(["%s"] * len(names))
        rows = self.query(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({marks})",
                          params=names)
        return {str(k): str(v) for k, v in rows}

    def global_status(self) -> dict[str, int]:
        """Questions and the Com_* counters (numbers only)."""
        rows = self.query("SHOW GLOBAL STATUS WHERE Variable_name = 'Questions'"
                          " OR Variable_name LIKE 'Com\\_%'")
        return {str(k): int(v) for k, v in rows if str(v).isdigit()}

    # -- one database per contender and scenario ----------------------------------------------
    def create_ours(self, name: str) -> Database:
        """Database, tables and least-privilege user, made by the project's own set-up code."""
        db = Database(name, f"p_{name}"[:32], secrets.token_urlsafe(16))
        admin = self.mariadb
        target = MySQLSettings(host="127.0.0.1", port=self.port, database=name, user=db.user,
                               password=db.password, ssl_mode="VERIFY_CA", ssl_ca=self.ca_file)
        setup_database(target, admin.admin_user, admin.admin_password)
        return db

    def create_plain(self, name: str, nullable_user: bool = False) -> Database:
        """A database with only `events`, and a user owning it (as a tutorial would have)."""
        db = Database(name, f"u_{name}"[:32], secrets.token_urlsafe(16))
        self.query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        self.query(events_ddl(nullable_user), database=name)
        self.query("CREATE USER %s@%s IDENTIFIED BY %s", params=(db.user, "%", db.password))
        self.query(f"GRANT ALL PRIVILEGES ON `{name}`.* TO %s@%s", params=(db.user, "%"))
        return db
