-- Tables of the ingestion pipeline. Idempotent: safe to run again on every start.
-- Runs unchanged on MySQL 8.0 and MariaDB 10.11 (no row-alias upserts, no CHECK-dependent logic).
-- All DATETIME(6) columns hold UTC.

-- One row per valid event. event_id is compared byte-wise so 'A1' and 'a1' are different events.
CREATE TABLE IF NOT EXISTS events (
  event_id   VARCHAR(64)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  user_id    VARCHAR(64)   NOT NULL,
  product_id VARCHAR(64)   NOT NULL,
  event_type VARCHAR(32)   NOT NULL,
  price      DECIMAL(12,2) NOT NULL,
  event_time DATETIME(6)   NOT NULL COMMENT 'UTC',
  PRIMARY KEY (event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Quarantine: every input row that did not become an event, with the reason and where it came from.
CREATE TABLE IF NOT EXISTS events_rejected (
  id          BIGINT        NOT NULL AUTO_INCREMENT,
  source_file VARCHAR(2048) NOT NULL,
  line_number BIGINT        NULL COMMENT '1-based physical line where the record starts; NULL: the whole file',
  reason      VARCHAR(32)   NOT NULL,
  detail      VARCHAR(512)  NULL,
  raw_line    TEXT          NULL COMMENT 'the line as read, invalid UTF-8 replaced, cut at 16000 characters',
  query_id    CHAR(36)      NOT NULL,
  batch_id    BIGINT        NOT NULL,
  rejected_at DATETIME(6)   NOT NULL,
  PRIMARY KEY (id),
  KEY events_rejected_reason (reason, rejected_at),
  KEY events_rejected_batch (query_id, batch_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Batch ledger: one row per committed micro-batch, written in the same transaction as its rows.
-- query_id is the id Spark keeps in <checkpoint>/metadata, so a new checkpoint never collides.
CREATE TABLE IF NOT EXISTS ingest_batches (
  query_id       CHAR(36)    NOT NULL,
  batch_id       BIGINT      NOT NULL,
  file_count     INT         NOT NULL,
  files_skipped  INT         NOT NULL COMMENT 'files already loaded by an earlier checkpoint',
  rows_read      BIGINT      NOT NULL,
  rows_written   BIGINT      NOT NULL,
  rows_rejected  BIGINT      NOT NULL,
  rows_duplicate BIGINT      NOT NULL,
  newest_file_at DATETIME(6) NULL COMMENT 'modification time of the newest file in the batch',
  started_at     DATETIME(6) NOT NULL COMMENT 'when the micro-batch reached the sink',
  prepare_ms     INT         NOT NULL COMMENT 'time to read, parse and check the batch (driver or Spark tasks)',
  write_ms       INT         NOT NULL COMMENT 'database time from the first statement to this row',
  attempts       INT         NOT NULL COMMENT 'database attempts this commit needed',
  committed_at   DATETIME(6) NOT NULL,
  source_files   MEDIUMTEXT  NOT NULL COMMENT 'JSON array of the file URIs',
  PRIMARY KEY (query_id, batch_id),
  KEY ingest_batches_committed (committed_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per-file accounting: rows_read = rows_written + rows_rejected + rows_duplicate.
-- A file is loaded once whatever happens to the checkpoint: file_key is SHA-256 of source_file.
-- file_bytes, file_lines and file_sha256 describe the bytes the job read; `pipeline.ops.reconcile`
-- compares them with the file on disk (or its archived copy).
CREATE TABLE IF NOT EXISTS ingest_files (
  file_key         CHAR(64)      NOT NULL,
  source_file      VARCHAR(2048) NOT NULL,
  file_modified_at DATETIME(6)   NULL,
  query_id         CHAR(36)      NOT NULL,
  batch_id         BIGINT        NOT NULL,
  rows_read        BIGINT        NOT NULL,
  rows_written     BIGINT        NOT NULL,
  rows_rejected    BIGINT        NOT NULL,
  rows_duplicate   BIGINT        NOT NULL,
  status           VARCHAR(16)   NOT NULL COMMENT 'loaded; missing: gone before it was read; quarantined: refused as a whole',
  committed_at     DATETIME(6)   NOT NULL,
  status_reason    VARCHAR(32)   NULL COMMENT 'why a file was quarantined (a reason code)',
  status_detail    VARCHAR(512)  NULL,
  file_bytes       BIGINT        NULL COMMENT 'bytes read (local files)',
  file_lines       BIGINT        NULL COMMENT 'physical lines read: ends are \n, \r\n or \r',
  file_sha256      CHAR(64)      NULL COMMENT 'SHA-256 of the bytes read',
  PRIMARY KEY (file_key),
  KEY ingest_files_batch (query_id, batch_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
