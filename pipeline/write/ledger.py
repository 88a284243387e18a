"""What the database already holds: the questions the commit protocol asks of the ledger."""

from __future__ import annotations

import logging

from pipeline.contract import BatchPayload
from pipeline.contract import printable_name
from pipeline.write import statements as sql
from pipeline.write.connection import Connection

log = logging.getLogger(__name__)

# Keys per `keys_loaded` query: each is 67 bytes of SQL, far below any packet limit.
KEYS_PER_QUERY = 1000


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

    def keys_loaded(self, keys: list[str]) -> set[str]:
        """The file keys among `keys` that `ingest_files` holds (loaded or quarantined)."""
        found: set[str] = set()
        for start in range(0, len(keys), KEYS_PER_QUERY):
            rows = self._db.query(sql.keys_loaded(keys[start:start + KEYS_PER_QUERY]))
            found.update(str(r[0]) for r in rows)
        self._db.jdbc.rollback()
        return found
