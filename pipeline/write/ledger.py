"""What the database already holds: the questions the commit protocol asks of the ledger."""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime

from pipeline.contract import BatchPayload
from pipeline.contract import printable_name
from pipeline.write import statements as sql
from pipeline.write.connection import Connection

log = logging.getLogger(__name__)


class Ledger:
    """Reads `ingest_batches` and `ingest_files` through the job's connection."""

    def __init__(self, db: Connection):
        self._db = db

    def batch_committed(self, batch: BatchPayload) -> bool:
        rows = self._db.query(sql.batch_committed(batch))
        self._db.jdbc.rollback()
        return bool(rows)

    def files_loaded(self, batch: BatchPayload) -> dict[str, tuple[str, int]]:
        """file key -> (query id, batch id) of the batch's files loaded before, logged."""
        rows = self._db.query(sql.files_loaded(batch))
        self._db.jdbc.rollback()
        done = {str(r[0]): (str(r[1]), int(r[2])) for r in rows}
        for f in batch.files:
            if f.key in done:
                log.warning("batch %d: %s was already loaded by query %s batch %s; skipping"
                            " it", batch.batch_id, printable_name(f.source_file), *done[f.key])
        return done

    def newest_loaded_file_at(self) -> datetime | None:
        """Modification time (UTC) of the newest file the last committed batch loaded."""
        rows = self._db.query(sql.NEWEST_LOADED_FILE)
        self._db.jdbc.rollback()
        if not rows or rows[0][0] is None:
            return None
        return datetime.fromisoformat(rows[0][0]).replace(tzinfo=UTC)
