"""The SQL files of sql/ (carried by the package: `pipeline.resources`), read as statements
(shared by the job, the set-up step and tests), and the job's own check that the tables it
writes exist with every column."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from py4j.protocol import Py4JJavaError

from pipeline.errors import SinkError
from pipeline.resources import data_file

if TYPE_CHECKING:
    from pipeline.write.connection import Connection

log = logging.getLogger(__name__)

TABLES = ("events", "events_rejected", "ingest_batches", "ingest_files")
SCHEMA_FILE = data_file("sql", "001_schema.sql")
GRANTS_FILE = data_file("sql", "002_pipeline_user.sql")
REPORT_GRANTS_FILE = data_file("sql", "003_report_user.sql")
EVENTS_GUARD_FILE = data_file("sql", "004_events_guard.sql")

# Columns added since the first schema: (table, column, definition). Tables created by an
# older version get them from `upgrade_statements` (MySQL 8 has no ADD COLUMN IF NOT EXISTS).
ADDED_COLUMNS = (
    ("ingest_files", "status_reason", "VARCHAR(32) NULL"),
    ("ingest_files", "status_detail", "VARCHAR(512) NULL"),
    ("ingest_files", "file_bytes", "BIGINT NULL"),
    ("ingest_files", "file_lines", "BIGINT NULL"),
    ("ingest_files", "file_sha256", "CHAR(64) NULL"),
)
COLUMNS_QUERY = ("SELECT lower(table_name), lower(column_name) FROM information_schema.columns"
                 " WHERE table_schema = DATABASE()")


def upgrade_statements(present: set[tuple[str, str]]) -> list[str]:
    """ALTER TABLE statements adding the ADDED_COLUMNS missing from `present` (table, column)
    pairs, as COLUMNS_QUERY lists them."""
    return [f"ALTER TABLE {table} ADD COLUMN {column} {definition}"
            for table, column, definition in ADDED_COLUMNS if (table, column) not in present]


def read_statements(path: Path, **params: str) -> list[str]:
    """Statements of a file: a statement ends with a line ending in ';'. Comments dropped.

    `params` fill `{name}` placeholders (identifiers from our own configuration only).
    """
    statements, current = [], []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current))
    return [s.format(**params) if params else s for s in statements]


def ensure_schema(db: Connection, user: str) -> None:
    """Create missing tables from sql/001_schema.sql and add columns newer versions need,
    or say who must (the job's own account may not: setup_db does it as an admin)."""
    rows = db.query("SELECT lower(table_name) FROM information_schema.tables"
                    " WHERE table_schema = DATABASE()")
    missing = [t for t in TABLES if t not in {str(r[0]) for r in rows}]
    if missing:
        log.info("creating missing tables: %s", ", ".join(missing))
        statements = read_statements(SCHEMA_FILE)
    else:
        statements = upgrade_statements({(str(t), str(c)) for t, c in db.query(COLUMNS_QUERY)})
        missing = [s.split(" ADD COLUMN ")[1].split()[0] for s in statements]
        if missing:
            log.info("adding missing columns: %s", ", ".join(missing))
    db.jdbc.rollback()
    try:
        for statement in statements:
            db.execute(statement)
        db.jdbc.commit()
    except Py4JJavaError as e:
        message = db.sql_error(e)[2]
        raise SinkError(
            f"tables or columns {', '.join(missing)} are missing and user {user} cannot"
            f" create them ({message.splitlines()[0]}): run `python -m pipeline.ops.setup_db`"
            " with an admin account, or apply sql/001_schema.sql") from None
