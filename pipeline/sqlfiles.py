"""The SQL files in sql/, read as statements (shared by the job, the set-up step and tests)."""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
SCHEMA_FILE = SQL_DIR / "001_schema.sql"
GRANTS_FILE = SQL_DIR / "002_pipeline_user.sql"
REPORT_GRANTS_FILE = SQL_DIR / "003_report_user.sql"


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
