"""The SQL text of a batch, built in Python so a whole batch goes in one round trip.

Row data travels as JSON (or TSV for LOAD DATA) inside a hex literal: nothing typed by a
user is ever spliced into SQL text, whatever the server's sql_mode. Written and duplicate
counts are computed by the server (ROW_COUNT() after each upsert), so a script needs no
answer before it can go on. The SQL runs on MySQL 8.0 and MariaDB 10.11 alike.
"""

from __future__ import annotations

import json
from datetime import UTC
from datetime import datetime

from pipeline.contract import FILE_QUARANTINED
from pipeline.contract import BatchPayload
from pipeline.contract import FilePayload


def text_literal(value: str) -> str:
    """A SQL expression for any text, immune to quoting and sql_mode."""
    return f"CONVERT(X'{value.encode('utf-8').hex()}' USING utf8mb4)"


def _when(value: datetime | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


EVENTS_INSERT = """INSERT INTO events (event_id, user_id, product_id, event_type, price, event_time)
SELECT j.e_id, j.u_id, j.p_id, j.e_type, j.price, j.e_time FROM JSON_TABLE({json}, '$[*]' COLUMNS (
  e_id VARCHAR(64) PATH '$[0]', u_id VARCHAR(64) PATH '$[1]', p_id VARCHAR(64) PATH '$[2]',
  e_type VARCHAR(32) PATH '$[3]', price VARCHAR(20) PATH '$[4]',
  e_time VARCHAR(32) PATH '$[5]')) AS j
ON DUPLICATE KEY UPDATE event_id = events.event_id"""

# The stream is handed to the driver right before; the name is only for the server's request.
# LOCAL makes a duplicate event_id a skipped row, as the upsert above does: the first one stays.
EVENTS_LOAD = r"""LOAD DATA LOCAL INFILE 'pipeline-events.tsv' INTO TABLE events
CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
(event_id, user_id, product_id, event_type, price, event_time)"""

REJECTS_INSERT = """INSERT INTO events_rejected
  (source_file, line_number, reason, detail, raw_line, query_id, batch_id, rejected_at)
SELECT {file}, j.line_no, j.reason, j.detail, j.raw_line, '{query_id}', {batch_id}, UTC_TIMESTAMP(6)
FROM JSON_TABLE({json}, '$[*]' COLUMNS (line_no BIGINT PATH '$[0]', reason VARCHAR(32) PATH '$[1]',
  detail VARCHAR(512) PATH '$[2]', raw_line TEXT PATH '$[3]')) AS j"""


def _number(value: int | None) -> str:
    return "NULL" if value is None else str(int(value))


def file_statements(batch: BatchPayload, f: FilePayload, written: int | None = None
                    ) -> list[str]:
    """A file's rows (unless a streamed batch sent them: then `written` is their count) and
    its `ingest_files` row; adds its figures to @batch_written and @batch_duplicate."""
    statements = []
    if written is not None:
        statements.append(f"SET @written = {written}")
    else:
        statements.append("SET @written = 0")
        for chunk in f.event_chunks:
            statements.append(EVENTS_INSERT.format(json=text_literal(chunk)))
            statements.append("SET @written = @written + ROW_COUNT()")
        statements.extend(rejects_insert(batch, f, chunk) for chunk in f.reject_chunks)
    if f.status == FILE_QUARANTINED:
        statements.append(
            "INSERT INTO events_rejected (source_file, line_number, reason, detail, raw_line,"
            f" query_id, batch_id, rejected_at) VALUES ({text_literal(f.source_file)}, NULL,"
            f" {text_literal(f.reason or '')}, {text_literal(f.detail or '')}, NULL,"
            f" '{batch.query_id}',"
            f" {batch.batch_id}, UTC_TIMESTAMP(6))")
    facts = f.facts
    sha = f"'{facts.sha256}'" if facts else "NULL"
    statements.append(
        "INSERT INTO ingest_files (file_key, source_file, file_modified_at, query_id, batch_id,"
        " rows_read, rows_written, rows_rejected, rows_duplicate, status, status_reason,"
        " status_detail, file_bytes, file_lines, file_sha256, committed_at)"
        f" VALUES ('{f.key}', {text_literal(f.source_file)}, {_when(f.modified_at)},"
        f" '{batch.query_id}', {batch.batch_id}, {f.rows_valid + f.rows_rejected}, @written,"
        f" {f.rows_rejected}, {f.rows_valid} - @written, '{f.status}',"
        f" {text_literal(f.reason) if f.reason else 'NULL'},"
        f" {text_literal(f.detail) if f.detail else 'NULL'}, {_number(facts and facts.size)},"
        f" {_number(facts and facts.lines)}, {sha},"
        " UTC_TIMESTAMP(6))")
    statements.append(f"SET @batch_written = @batch_written + @written,"
                      f" @batch_duplicate = @batch_duplicate + {f.rows_valid} - @written")
    return statements


def ledger_statement(batch: BatchPayload, attempts: int, skipped: int) -> str:
    """The batch's `ingest_batches` row; its written and duplicate counts are the server's."""
    newest = max((f.modified_at for f in batch.files if f.modified_at), default=None)
    return (
        "INSERT INTO ingest_batches (query_id, batch_id, file_count, files_skipped, rows_read,"
        " rows_written, rows_rejected, rows_duplicate, newest_file_at, started_at, prepare_ms,"
        " write_ms, attempts, committed_at, source_files) VALUES ("
        f"'{batch.query_id}', {batch.batch_id}, {len(batch.files)}, {skipped},"
        f" {sum(f.rows_valid + f.rows_rejected for f in batch.files)}, @batch_written,"
        f" {sum(f.rows_rejected for f in batch.files)}, @batch_duplicate, {_when(newest)},"
        f" {_when(batch.started_at)}, {batch.prepare_ms},"
        f" TIMESTAMPDIFF(MICROSECOND, @batch_started, NOW(6)) DIV 1000, {attempts},"
        " UTC_TIMESTAMP(6),"
        f" {text_literal(json.dumps([f.source_file for f in batch.files]))})")


def batch_statements(batch: BatchPayload, attempts: int, skipped: int,
                     written: dict[str, int] | None = None, ledger: bool = True) -> list[str]:
    """The batch's transaction as statements, COMMIT excluded.

    Written and duplicate counts are computed by the server (ROW_COUNT() after each upsert,
    with the connection reporting affected rather than found rows), so the script needs no
    answer before it can go on. A streamed batch has sent its rows already and passes the
    events `written` per file key: the script is then just the file and ledger rows.
    Without `ledger`, only the files are written (a batch written file by file).
    """
    statements = ["SET @batch_written = 0, @batch_duplicate = 0"
                  + (", @batch_started = NOW(6)" if written is None else "")]
    for f in batch.files:
        statements.extend(file_statements(
            batch, f, None if written is None else written.get(f.key, 0)))
    if ledger:
        statements.append(ledger_statement(batch, attempts, skipped))
    return statements


def rejects_insert(batch: BatchPayload, f: FilePayload, chunk: str) -> str:
    return REJECTS_INSERT.format(file=text_literal(f.source_file), query_id=batch.query_id,
                                  batch_id=batch.batch_id, json=text_literal(chunk))


def ledger_from_files(batch: BatchPayload) -> list[str]:
    """The ledger row of a batch written file by file, every figure summed from the
    `ingest_files` rows its files committed (files loaded under an earlier checkpoint
    have none here: they count as skipped)."""
    where = f"query_id = '{batch.query_id}' AND batch_id = {batch.batch_id}"
    newest = max((f.modified_at for f in batch.files if f.modified_at), default=None)
    return [
        f"SET @batch_written = (SELECT coalesce(sum(rows_written), 0) FROM ingest_files"
        f" WHERE {where}), @batch_duplicate = (SELECT coalesce(sum(rows_duplicate), 0)"
        f" FROM ingest_files WHERE {where})",
        "INSERT INTO ingest_batches (query_id, batch_id, file_count, files_skipped, rows_read,"
        " rows_written, rows_rejected, rows_duplicate, newest_file_at, started_at, prepare_ms,"
        " write_ms, attempts, committed_at, source_files)"
        f" SELECT '{batch.query_id}', {batch.batch_id}, count(*), {len(batch.files)} - count(*),"
        " coalesce(sum(rows_read), 0), coalesce(sum(rows_written), 0),"
        " coalesce(sum(rows_rejected), 0), coalesce(sum(rows_duplicate), 0),"
        f" {_when(newest)}, {_when(batch.started_at)}, {batch.prepare_ms}, 0, 1,"
        f" UTC_TIMESTAMP(6), {text_literal(json.dumps([f.source_file for f in batch.files]))}"
        f" FROM ingest_files WHERE {where}"]


def batch_committed(batch: BatchPayload) -> str:
    return ("SELECT 1 FROM ingest_batches WHERE query_id ="
            f" '{batch.query_id}' AND batch_id = {batch.batch_id}")


def files_loaded(batch: BatchPayload) -> str:
    keys = ", ".join(f"'{f.key}'" for f in batch.files) or "''"
    return f"SELECT file_key, query_id, batch_id FROM ingest_files WHERE file_key IN ({keys})"


def keys_loaded(keys: list[str]) -> str:
    """Which of these file keys (sha256 hex, never user text) `ingest_files` holds."""
    listed = ", ".join(f"'{k}'" for k in keys) or "''"
    return f"SELECT file_key FROM ingest_files WHERE file_key IN ({listed})"
