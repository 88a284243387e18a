"""The SQL files in sql/, read as statements (shared by the job, the set-up step and tests)."""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SCHEMA_FILE = SQL_DIR / "001_schema.sql"
GRANTS_FILE = SQL_DIR / "002_pipeline_user.sql"
REPORT_GRANTS_FILE = SQL_DIR / "003_report_user.sql"

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
