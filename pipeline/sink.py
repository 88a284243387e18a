"""The MySQL sink: the only code of the streaming job that talks to the database.

One JDBC connection on the driver, kept open across micro-batches. Each batch is one
transaction sent as one multi-statement script (one network round trip when it fits in a
packet): the events upsert, the rejected rows, one `ingest_files` row per file and the
`ingest_batches` ledger row, then COMMIT. A replayed batch (Spark re-runs a batch whose
commit it did not record) collides with its own ledger or file rows, is rolled back and
recognised; files loaded under an earlier checkpoint are skipped the same way.

Row data travels as JSON inside a hex literal read by JSON_TABLE: nothing typed by a user is
ever spliced into SQL text, whatever the server's sql_mode, and a whole batch needs no
per-value calls between Python and the JVM.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path

from py4j.java_gateway import is_instance_of
from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

from pipeline.config import Settings
from pipeline.errors import PipelineError
from pipeline.jdbc import (TRUSTSTORE_PASSWORD, DriverInfo, build_url, unsupported_driver,
                           version_numbers)
from pipeline.source_files import FileFacts
from pipeline.sqlfiles import COLUMNS_QUERY, SCHEMA_FILE, read_statements, upgrade_statements
from pipeline.transforms import EVENTS_TSV
from pipeline.validation import KIND_EVENT

log = logging.getLogger(__name__)

TABLES = ("events", "events_rejected", "ingest_batches", "ingest_files")
DUPLICATE_KEY = 1062
# Warnings the server keeps per statement (its maximum); a LOAD DATA chunk has fewer rows.
MAX_WARNINGS = 65535
# SQLSTATE classes and MySQL error codes worth another attempt after a pause.
_TRANSIENT_STATES = ("08", "40", "HYT")
_TRANSIENT_CODES = {1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013}
_TRANSIENT_CLASSES = ("SQLTransient", "SQLRecoverable", "SQLNonTransientConnection",
                      "CommunicationsException", "SocketTimeout", "ConnectException")
_TOO_LARGE_CODES = {1153, 1301}


# Driver classes loaded from a jar, per JVM: py4j caches reflection by class name, so a second
# class loader for the same jar would hand it methods of the wrong class.
_LOADED_DRIVER_CLASSES: dict[tuple[int, str, str], object] = {}


class CommitHooks:
    """Called around each transaction's COMMIT. The job passes none; the crash tests pass
    one that kills the job at the two moments that matter: before the transaction reached
    the database, and after it committed but before Spark recorded the batch."""

    def before_commit(self, batch_id: int) -> None:
        """Right before the batch's last statements and COMMIT are sent."""

    def after_commit(self, batch_id: int) -> None:
        """Right after COMMIT returned."""


class SinkError(PipelineError):
    """The database cannot take the batch; the message says why and what to check."""


class DatabaseUnreachable(SinkError):
    """The server did not answer; worth retrying after a pause."""


class BatchRejected(SinkError):
    """The server refused the batch's data (a data error, a statement too large): no retry
    can cure it, but writing the batch's files one by one isolates the file that causes it."""


class _TransientError(Exception):
    pass


FILE_LOADED, FILE_MISSING, FILE_QUARANTINED = "loaded", "missing", "quarantined"


@dataclass
class FilePayload:
    """One source file of a batch: its rows as JSON arrays (text), ready for JSON_TABLE.

    `facts` are the size, lines and hash of what was read (local files). A quarantined file
    keeps no rows: `reason` and `detail` say why it was refused as a whole.
    """

    source_file: str
    modified_at: datetime | None
    status: str = FILE_LOADED
    rows_valid: int = 0
    rows_rejected: int = 0
    event_chunks: list[str] = field(default_factory=list)
    reject_chunks: list[str] = field(default_factory=list)
    facts: FileFacts | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def key(self) -> str:
        return sha256(self.source_file.encode("utf-8")).hexdigest()

    @property
    def missing(self) -> bool:
        return self.status == FILE_MISSING

    def add(self, kind: str, rows: int, text: str) -> None:
        if kind == KIND_EVENT:
            self.rows_valid += rows
            self.event_chunks.append(text)
        else:
            self.rows_rejected += rows
            self.reject_chunks.append(text)

    def mark_missing(self) -> None:
        self._drop_rows()
        self.status = FILE_MISSING

    def quarantine(self, reason: str, detail: str) -> None:
        """Refuse the whole file: none of its rows is written, the reason is recorded."""
        self._drop_rows()
        self.status, self.reason, self.detail = FILE_QUARANTINED, reason, detail[:512]

    def _drop_rows(self) -> None:
        self.rows_valid = self.rows_rejected = 0
        self.event_chunks, self.reject_chunks = [], []


@dataclass
class BatchPayload:
    """Everything one micro-batch writes."""

    query_id: str
    batch_id: int
    files: list[FilePayload]
    started_at: datetime
    prepare_ms: int


@dataclass(frozen=True)
class BatchResult:
    """What the database now holds for a batch."""

    replayed: bool
    rows_written: int = 0
    rows_duplicate: int = 0
    files_skipped: int = 0
    attempts: int = 1
    db_ms: int = 0


# (source_file, kind, rows, payload): one chunk of a file's checked rows.
Chunk = tuple[str, str, int, str]


class _ChunkStream:
    """A streamed batch's chunks: read once from the checks, kept to send again on a retry."""

    def __init__(self, batch: BatchPayload, chunks: Iterator[Chunk]):
        self._batch = batch
        self._chunks = chunks
        self._received: list[tuple[FilePayload, str, int, str]] = []

    def replay_then_read(self) -> Iterator[tuple[FilePayload, str, int, str]]:
        yield from self._received
        files = {f.source_file: f for f in self._batch.files}
        for source_file, kind, rows, payload in self._chunks:
            f = files.get(source_file)
            if f is None:  # not in the checkpoint's list: still accounted for, never dropped
                f = files[source_file] = FilePayload(source_file, None)
                self._batch.files.append(f)
            if kind == KIND_EVENT:
                f.rows_valid += rows
            else:
                f.rows_rejected += rows
            self._received.append((f, kind, rows, payload))
            yield self._received[-1]


def _text(value: str) -> str:
    """A SQL expression for any text, immune to quoting and sql_mode."""
    return f"CONVERT(X'{value.encode('utf-8').hex()}' USING utf8mb4)"


def _when(value: datetime | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + "'"


_EVENTS_INSERT = """INSERT INTO events (event_id, user_id, product_id, event_type, price, event_time)
SELECT j.e_id, j.u_id, j.p_id, j.e_type, j.price, j.e_time FROM JSON_TABLE({json}, '$[*]' COLUMNS (
  e_id VARCHAR(64) PATH '$[0]', u_id VARCHAR(64) PATH '$[1]', p_id VARCHAR(64) PATH '$[2]',
  e_type VARCHAR(32) PATH '$[3]', price VARCHAR(20) PATH '$[4]', e_time VARCHAR(32) PATH '$[5]')) AS j
ON DUPLICATE KEY UPDATE event_id = events.event_id"""

# The stream is handed to the driver right before; the name is only for the server's request.
# LOCAL makes a duplicate event_id a skipped row, as the upsert above does: the first one stays.
_EVENTS_LOAD = r"""LOAD DATA LOCAL INFILE 'pipeline-events.tsv' INTO TABLE events
CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n'
(event_id, user_id, product_id, event_type, price, event_time)"""

_REJECTS_INSERT = """INSERT INTO events_rejected
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
            statements.append(_EVENTS_INSERT.format(json=_text(chunk)))
            statements.append("SET @written = @written + ROW_COUNT()")
        statements.extend(_rejects_insert(batch, f, chunk) for chunk in f.reject_chunks)
    if f.status == FILE_QUARANTINED:
        statements.append(
            "INSERT INTO events_rejected (source_file, line_number, reason, detail, raw_line,"
            f" query_id, batch_id, rejected_at) VALUES ({_text(f.source_file)}, NULL,"
            f" {_text(f.reason or '')}, {_text(f.detail or '')}, NULL, '{batch.query_id}',"
            f" {batch.batch_id}, UTC_TIMESTAMP(6))")
    facts = f.facts
    sha = f"'{facts.sha256}'" if facts else "NULL"
    statements.append(
        "INSERT INTO ingest_files (file_key, source_file, file_modified_at, query_id, batch_id,"
        " rows_read, rows_written, rows_rejected, rows_duplicate, status, status_reason,"
        " status_detail, file_bytes, file_lines, file_sha256, committed_at)"
        f" VALUES ('{f.key}', {_text(f.source_file)}, {_when(f.modified_at)},"
        f" '{batch.query_id}', {batch.batch_id}, {f.rows_valid + f.rows_rejected}, @written,"
        f" {f.rows_rejected}, {f.rows_valid} - @written, '{f.status}',"
        f" {_text(f.reason) if f.reason else 'NULL'},"
        f" {_text(f.detail) if f.detail else 'NULL'}, {_number(facts and facts.size)},"
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
        f" {_text(json.dumps([f.source_file for f in batch.files]))})")


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


def _rejects_insert(batch: BatchPayload, f: FilePayload, chunk: str) -> str:
    return _REJECTS_INSERT.format(file=_text(f.source_file), query_id=batch.query_id,
                                  batch_id=batch.batch_id, json=_text(chunk))


def _java_sql_error(exc: Py4JJavaError, gateway) -> tuple[str, int, str, str]:
    """(SQLSTATE, vendor code, message, class name) of the first SQLException in the chain."""
    current = exc.java_exception
    while current is not None:
        if is_instance_of(gateway, current, "java.sql.SQLException"):
            return (current.getSQLState() or "", current.getErrorCode(),
                    str(current.getMessage()), current.getClass().getName())
        current = current.getCause()
    top = exc.java_exception
    return "", 0, str(top.getMessage()), top.getClass().getName()


def _is_too_large(code: int, message: str) -> bool:
    """A statement over max_allowed_packet: the server (1153, 1301) or the driver refused it.
    Some drivers close the connection for it, which must not pass for an outage."""
    return code in _TOO_LARGE_CODES or "max_allowed_packet" in message


def _is_transient(state: str, code: int, class_name: str) -> bool:
    return (state.startswith(_TRANSIENT_STATES) or code in _TRANSIENT_CODES
            or any(name in class_name for name in _TRANSIENT_CLASSES))


def explain_connect_failure(message: str, settings: Settings) -> SinkError:
    """Turn a driver's connect error into advice (the driver never echoes the password)."""
    m = settings.mysql
    lowered = message.lower()
    where = f"{m.host}:{m.port}"
    if "access denied" in lowered:
        hint = (f"check MYSQL_USER/MYSQL_PASSWORD and that {m.user} may use database "
                f"{m.database}")
        if m.ssl_mode == "DISABLED":
            hint += "; a server that requires TLS also answers 'Access denied' to plain text:" \
                    " set MYSQL_SSL_MODE"
        return SinkError(f"database refused the login at {where}: {hint}")
    if "unknown database" in lowered:
        return SinkError(f"database {m.database!r} does not exist on {where}: create it"
                         " (scripts/setup.sh or python -m pipeline.setup_db)")
    if "pkix" in lowered or ("certificate" in lowered and "verif" not in lowered):
        return SinkError(f"TLS: the certificate of {where} is not signed by"
                         f" MYSQL_SSL_CA={m.ssl_ca} (wrong CA file?)")
    if "hostname verification" in lowered or "doesn't correspond to certificate" in lowered:
        return SinkError(f"TLS: the certificate of {where} does not name host {m.host!r};"
                         " connect by the name in the certificate or use"
                         " MYSQL_SSL_MODE=VERIFY_CA")
    if "serversslcert" in lowered:
        return SinkError(f"TLS: cannot read MYSQL_SSL_CA={m.ssl_ca}")
    if any(s in lowered for s in ("connection refused", "could not connect", "timed out",
                                  "socket fail", "connect timed out", "unknownhost")):
        return DatabaseUnreachable(f"cannot reach the database at {where}: is it running and"
                                   f" reachable? ({message.splitlines()[0]})")
    return SinkError(f"cannot connect to the database at {where}: {message.splitlines()[0]}")


class MySQLSink:
    """Writes micro-batches transactionally through one JDBC connection on the driver."""

    def __init__(self, spark: SparkSession, settings: Settings,
                 hooks: CommitHooks | None = None):
        self._spark = spark
        self._hooks = hooks or CommitHooks()
        self._jvm = spark._jvm
        self._gateway = spark.sparkContext._gateway
        self._settings = settings
        self._driver, self.driver_info = self._load_driver()
        self._truststore_dir: tempfile.TemporaryDirectory | None = None
        self._url = build_url(settings.mysql, self.driver_info, settings.jdbc_extra_options,
                              self._mysql_truststore(), bulk_load=self._bulk_load_wanted())
        self._conn = None
        # Batches commit on Spark's callback thread; the job's backlog check runs on its own.
        self._conn_lock = threading.RLock()
        self._packet_limit = 4 * 1024 * 1024
        # Room in a statement for the text around a chunk: names, the ledger's columns.
        self._statement_overhead = 16 * 1024
        self.tls_version = ""
        # Known once connected: big batches go through LOAD DATA LOCAL (see commit_streamed).
        self.bulk_load = False

    @property
    def chunk_max_bytes(self) -> int:
        """The most UTF-8 bytes one chunk of rows may have: it travels hex-encoded (twice
        its size) inside one statement, which must stay below the server's packet limit."""
        return max(4096, (self._packet_limit - self._statement_overhead) // 2)

    def _bulk_load_wanted(self) -> bool:
        """LOAD DATA LOCAL from a stream: MariaDB Connector/J only (MySQL's is untested here)."""
        return self._settings.bulk_load and self.driver_info.family.startswith("mariadb")

    # -- connection ---------------------------------------------------------------------
    def _load_driver(self):
        """The driver class from the classpath (--jars, --packages) or else from the jar.

        Loading it ourselves from JDBC_DRIVER_JAR means `spark-submit` without `--jars`
        works too: only this driver-side connection uses JDBC, never the executors.
        """
        name, jar = self._settings.driver_class, self._settings.driver_jar
        lang = self._jvm.java.lang
        loader = lang.Thread.currentThread().getContextClassLoader()
        try:
            driver_class = lang.Class.forName(name, True, loader)
        except Py4JJavaError:
            if not jar.is_file():
                raise SinkError(f"JDBC driver class {name} not found and JDBC driver jar {jar}"
                                " does not exist: run scripts/setup.sh or set"
                                " JDBC_DRIVER_JAR") from None
            key = (id(self._gateway), str(jar), name)
            if key not in _LOADED_DRIVER_CLASSES:
                urls = self._gateway.new_array(self._jvm.java.net.URL, 1)
                urls[0] = self._jvm.java.io.File(str(jar)).toURI().toURL()
                jar_loader = self._jvm.java.net.URLClassLoader(urls, loader)
                try:
                    _LOADED_DRIVER_CLASSES[key] = lang.Class.forName(name, True, jar_loader)
                except Py4JJavaError:
                    raise SinkError(f"JDBC driver class {name} is not in {jar}: check"
                                    " JDBC_DRIVER_CLASS and JDBC_DRIVER_JAR") from None
            driver_class = _LOADED_DRIVER_CLASSES[key]
        # getMajorVersion/getMinorVersion stop at "8.0", which cannot tell 8.0.12 (ignores
        # sslMode) from 8.0.13: MySQL Connector/J compiles its full version into
        # com.mysql.cj.Constants; other jars may declare it in the manifest.
        try:
            constants = driver_class.getClassLoader().loadClass("com.mysql.cj.Constants")
            declared = str(constants.getField("CJ_VERSION").get(None))
        except Py4JJavaError:
            package = driver_class.getPackage()
            declared = str((package.getImplementationVersion() if package else None) or "")
        problem = None
        if version_numbers(declared):
            # A jar that says it is too old is refused before its driver is even instantiated.
            problem = unsupported_driver(DriverInfo(name, 0, 0, declared))
        if problem is None:
            driver = driver_class.newInstance()
            info = DriverInfo(name, driver.getMajorVersion(), driver.getMinorVersion(), declared)
            problem = unsupported_driver(info)
        if problem:
            raise SinkError(problem)
        return driver, info

    def _mysql_truststore(self) -> str | None:
        """MySQL Connector/J reads no PEM files: convert the CA bundle to a PKCS12 store."""
        m = self._settings.mysql
        if self.driver_info.family != "mysql" or m.ssl_mode not in ("VERIFY_CA",
                                                                    "VERIFY_IDENTITY"):
            return None
        self._truststore_dir = tempfile.TemporaryDirectory(prefix="pipeline-ca-")
        store = Path(self._truststore_dir.name) / "ca.p12"
        pem = m.ssl_ca.read_text()
        certs = [c + "-----END CERTIFICATE-----\n" for c in pem.split("-----END CERTIFICATE-----")
                 if "BEGIN CERTIFICATE" in c]
        keytool = Path(os.environ.get("JAVA_HOME", "/usr")) / "bin" / "keytool"
        for i, cert in enumerate(certs):
            cert_file = Path(self._truststore_dir.name) / f"ca{i}.pem"
            cert_file.write_text(cert)
            subprocess.run([str(keytool), "-importcert", "-noprompt", "-alias", f"ca{i}",
                            "-file", str(cert_file), "-keystore", str(store), "-storetype",
                            "PKCS12", "-storepass", TRUSTSTORE_PASSWORD],
                           check=True, capture_output=True)
        return f"file:{store}"

    def connect(self) -> None:
        """Open the connection, prove TLS is really on when asked for, set up the session."""
        self.close()
        props = self._jvm.java.util.Properties()
        props.setProperty("user", self._settings.mysql.user)
        props.setProperty("password", self._settings.mysql.password)
        try:
            conn = self._driver.connect(self._url, props)
            if conn is None:
                raise SinkError(f"driver {self.driver_info.class_name} does not accept the URL")
            conn.setAutoCommit(False)
            rows = self._query(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
            self.tls_version = rows[0][1] if rows else ""
            packet, local_infile = self._query(conn, "SELECT @@max_allowed_packet,"
                                                     " @@local_infile")[0]
            # Every warning of a LOAD DATA chunk must be readable to tell duplicates from
            # rows the table refused (_load_events); a chunk is far below this many rows.
            self._execute(conn, "SET time_zone = '+00:00',"
                                " sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION',"
                                f" max_error_count = {MAX_WARNINGS}")
            conn.commit()
        except Py4JJavaError as e:
            _, _, message, _ = _java_sql_error(e, self._gateway)
            raise explain_connect_failure(message, self._settings) from None
        if self._settings.mysql.ssl_mode != "DISABLED" and not self.tls_version:
            conn.close()
            raise SinkError(
                f"MYSQL_SSL_MODE={self._settings.mysql.ssl_mode} but the session to "
                f"{self._settings.mysql.host} is NOT encrypted (Ssl_version is empty): refusing"
                " to send data in plain text; check the driver's TLS options")
        # Leave room for the statement text around the JSON.
        self._packet_limit = max(64 * 1024, int(packet) // 2)
        self.bulk_load = self._bulk_load_wanted() and str(local_infile).upper() in ("1", "ON")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Py4JJavaError:
                pass
            self._conn = None

    # -- schema -------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables from sql/001_schema.sql and add columns newer versions
        need, or say who must."""
        missing = self.missing_tables()
        if not missing:
            present = {(str(t), str(c)) for t, c in self._query(self._conn, COLUMNS_QUERY)}
            self._conn.rollback()
            statements = upgrade_statements(present)
            if not statements:
                return
            missing = [s.split(" ADD COLUMN ")[1].split()[0] for s in statements]
            log.info("adding missing columns: %s", ", ".join(missing))
        else:
            log.info("creating missing tables: %s", ", ".join(missing))
            statements = read_statements(SCHEMA_FILE)
        try:
            for statement in statements:
                self._execute(self._conn, statement)
            self._conn.commit()
        except Py4JJavaError as e:
            _, _, message, _ = _java_sql_error(e, self._gateway)
            raise SinkError(
                f"tables or columns {', '.join(missing)} are missing and user {self._settings.mysql.user}"
                f" cannot create them ({message.splitlines()[0]}): run"
                " `python -m pipeline.setup_db` with an admin account, or apply"
                " sql/001_schema.sql") from None

    def missing_tables(self) -> list[str]:
        rows = self._query(self._conn, "SELECT table_name FROM information_schema.tables"
                                       " WHERE table_schema = DATABASE()")
        self._conn.rollback()
        present = {str(r[0]).lower() for r in rows}
        return [t for t in TABLES if t not in present]

    # -- batches ------------------------------------------------------------------------
    def commit_batch(self, batch: BatchPayload, ledger: bool = True) -> BatchResult:
        """Make the batch durable exactly once, retrying transient failures with backoff.

        Without `ledger` only its files are written (one of a batch written file by file);
        `commit_ledger` then closes the batch. BatchRejected: the data was refused.
        """
        with self._conn_lock:
            return self._with_retries(
                batch, lambda attempt: self._commit_once(batch, attempt, ledger))

    def commit_ledger(self, batch: BatchPayload) -> BatchResult:
        """The ledger row of a batch whose files were committed one by one before.

        Its totals are summed from those files' rows, in the same transaction.
        """
        where = f"query_id = '{batch.query_id}' AND batch_id = {batch.batch_id}"
        statements = [
            "SET @batch_started = NOW(6),"
            f" @batch_written = (SELECT coalesce(sum(rows_written), 0) FROM ingest_files"
            f" WHERE {where}), @batch_duplicate = (SELECT coalesce(sum(rows_duplicate), 0)"
            f" FROM ingest_files WHERE {where})",
            ledger_statement(batch, 1, 0)]

        def once(attempt: int) -> BatchResult:
            try:
                counts = self._run_transaction(statements)
            except Py4JJavaError as e:
                self._rollback_after(e, batch)
                return BatchResult(replayed=True, attempts=attempt)
            return BatchResult(replayed=False, rows_written=counts[0],
                               rows_duplicate=counts[1], attempts=attempt)

        with self._conn_lock:
            return self._with_retries(batch, once)

    def commit_streamed(self, batch: BatchPayload, chunks: Iterable[Chunk],
                        event_format: str, ledger: bool = True) -> BatchResult:
        """Make a big batch durable exactly once while its later rows are still being checked.

        `batch.files` come without rows; `chunks` yields each file's (source_file, kind, rows,
        payload) in file order, events as `event_format` text (TSV only when `bulk_load`).
        Each chunk is sent as it arrives, into one open transaction; the file rows, the
        ledger row and COMMIT come last, so a crash at any point leaves nothing behind.
        Chunks are kept until the commit: after a transient failure they are sent again on
        a new connection. The counts in `batch.files` grow as the chunks arrive.
        """
        stream = _ChunkStream(batch, iter(chunks))
        with self._conn_lock:
            return self._with_retries(
                batch, lambda attempt: self._stream_once(batch, stream, event_format, attempt,
                                                         ledger))

    def _with_retries(self, batch: BatchPayload,
                      commit_once: Callable[[int], BatchResult]) -> BatchResult:
        retry = self._settings.retry
        started = time.monotonic()
        for attempt in range(1, retry.max_attempts + 1):
            try:
                if self._conn is None:
                    self.connect()
                result = commit_once(attempt)
                return replace(result, db_ms=int((time.monotonic() - started) * 1000))
            except BatchRejected:
                self.close()  # the server may have dropped the connection with its refusal
                raise
            except (_TransientError, DatabaseUnreachable) as e:
                self.close()
                if attempt == retry.max_attempts:
                    raise SinkError(
                        f"database unavailable, batch {batch.batch_id} not written after"
                        f" {attempt} attempts: {e}. Nothing was lost: restart the job with the"
                        " same checkpoint once the database is back") from None
                delay = retry.delay(attempt)
                log.warning("batch %d: database unavailable (attempt %d/%d): %s; retrying in"
                            " %.1fs", batch.batch_id, attempt, retry.max_attempts, e, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _commit_once(self, batch: BatchPayload, attempt: int, ledger: bool) -> BatchResult:
        skipped = 0
        while True:
            statements = batch_statements(batch, attempt, skipped, ledger=ledger)
            try:
                self._hooks.before_commit(batch.batch_id)
                counts = self._run_transaction(statements)
                self._hooks.after_commit(batch.batch_id)
                return BatchResult(replayed=False, rows_written=counts[0],
                                   rows_duplicate=counts[1], files_skipped=skipped,
                                   attempts=attempt)
            except Py4JJavaError as e:
                self._rollback_after(e, batch)
            # A ledger or file row already exists: a replay, or files loaded before.
            if ledger and self._batch_committed(batch):
                return BatchResult(replayed=True, attempts=attempt)
            done = self._files_already_loaded(batch)
            if not done:
                raise SinkError(f"batch {batch.batch_id}: duplicate key but no earlier batch"
                                " or file explains it")
            for f in batch.files:
                if f.key in done:
                    log.warning("batch %d: %s was already loaded by query %s batch %s;"
                                " skipping it", batch.batch_id, f.source_file, *done[f.key])
            skipped += len(done)
            batch = BatchPayload(batch.query_id, batch.batch_id,
                                 [f for f in batch.files if f.key not in done],
                                 batch.started_at, batch.prepare_ms)
            if not ledger and not batch.files:
                return BatchResult(replayed=True, files_skipped=skipped, attempts=attempt)

    def _rollback_after(self, error: Py4JJavaError, batch: BatchPayload) -> None:
        """Roll back after a failed statement; return only for a duplicate key."""
        state, code, message, class_name = _java_sql_error(error, self._gateway)
        self._rollback_quietly()
        if code != DUPLICATE_KEY:
            first_line = message.splitlines()[0] if message else class_name
            if _is_too_large(code, message):
                raise BatchRejected(f"database refused a statement of batch {batch.batch_id}"
                                    f" as too large: {first_line}") from None
            if _is_transient(state, code, class_name):
                raise _TransientError(first_line) from None
            raise BatchRejected(f"database rejected batch {batch.batch_id}: {first_line}"
                                ) from None

    def _stream_once(self, batch: BatchPayload, stream: _ChunkStream, event_format: str,
                     attempt: int, ledger: bool) -> BatchResult:
        written: dict[str, int] = {}
        stmt = self._conn.createStatement()
        try:
            # Ask first: sending a big batch only to find it committed before wastes minutes.
            if ledger and self._batch_committed(batch):
                return BatchResult(replayed=True, attempts=attempt)
            done = self._files_already_loaded(batch)
            for f in batch.files:
                if f.key in done:
                    log.warning("batch %d: %s was already loaded by query %s batch %s;"
                                " skipping it", batch.batch_id, f.source_file, *done[f.key])
            stmt.execute("SET @batch_started = NOW(6)")
            for f, kind, rows, payload in stream.replay_then_read():
                if f.key in done:
                    continue
                if kind != KIND_EVENT:
                    stmt.execute(_rejects_insert(batch, f, payload))
                elif event_format == EVENTS_TSV:
                    written[f.key] = written.get(f.key, 0) + self._load_events(stmt, rows,
                                                                               payload)
                else:
                    stmt.execute(_EVENTS_INSERT.format(json=_text(payload)))
                    written[f.key] = written.get(f.key, 0) + stmt.getUpdateCount()
        except Py4JJavaError as e:
            self._rollback_after(e, batch)
            raise SinkError(f"batch {batch.batch_id}: duplicate key in the events of a"
                            " streamed batch") from None
        except BaseException:
            self._rollback_quietly()  # the checks failed or the job is stopping
            raise
        finally:
            stmt.close()
        kept = BatchPayload(batch.query_id, batch.batch_id,
                            [f for f in batch.files if f.key not in done],
                            batch.started_at, batch.prepare_ms)
        statements = batch_statements(kept, attempt, len(done), written, ledger=ledger)
        try:
            self._hooks.before_commit(batch.batch_id)
            counts = self._run_transaction(statements)
            self._hooks.after_commit(batch.batch_id)
        except Py4JJavaError as e:
            self._rollback_after(e, batch)
            if ledger and self._batch_committed(batch):
                return BatchResult(replayed=True, attempts=attempt)
            raise SinkError(f"batch {batch.batch_id}: its files were loaded by another job"
                            " while it was written; nothing of it was committed") from None
        return BatchResult(replayed=False, rows_written=counts[0], rows_duplicate=counts[1],
                           files_skipped=len(done), attempts=attempt)

    def _load_events(self, stmt, rows: int, tsv: str) -> int:
        """LOAD DATA LOCAL of one TSV chunk from memory; the number of new events.

        LOCAL turns every data error into a warning and skips the row, like IGNORE: a row
        the table refuses (a constraint, a value that does not fit) would pass for a
        duplicate if only the warnings were counted. So each warning's code is read, and
        anything but a duplicate key refuses the batch rather than store it altered.
        """
        stmt.setLocalInfileInputStream(
            self._jvm.java.io.ByteArrayInputStream(tsv.encode("utf-8")))
        stmt.execute(_EVENTS_LOAD)
        loaded = stmt.getUpdateCount()
        if loaded == rows:
            return loaded
        rs = stmt.executeQuery("SHOW WARNINGS")
        other = []
        codes = 0
        while rs.next():
            codes += 1
            if rs.getInt(2) != DUPLICATE_KEY:
                other.append(f"{rs.getInt(2)} {rs.getString(3)}")
        rs.close()
        if other or codes != rows - loaded:
            first = other[0] if other else f"{codes} warnings for {rows - loaded} skipped rows"
            raise BatchRejected(
                f"LOAD DATA of {rows} events skipped {rows - loaded} rows that are not all"
                f" duplicates ({first}): the events table refuses values the checks passed;"
                " check it matches sql/001_schema.sql (nothing of this batch was committed)")
        return loaded

    def _run_transaction(self, statements: list[str]) -> tuple[int, int]:
        """Send the statements in as few packets as fit, commit, return (written, duplicate)."""
        statements = [*statements, "COMMIT", "SELECT @batch_written, @batch_duplicate"]
        scripts, current, size = [], [], 0
        for statement in statements:
            if current and size + len(statement) > self._packet_limit:
                scripts.append(";\n".join(current))
                current, size = [], 0
            current.append(statement)
            size += len(statement) + 2
        scripts.append(";\n".join(current))
        stmt = self._conn.createStatement()
        try:
            result: tuple[int, int] = (0, 0)
            for script in scripts:
                has_rows = stmt.execute(script)
                while True:
                    if has_rows:
                        rs = stmt.getResultSet()
                        if rs.next():
                            result = (rs.getLong(1), rs.getLong(2))
                        rs.close()
                    elif stmt.getUpdateCount() == -1:
                        break
                    has_rows = stmt.getMoreResults()
            return result
        finally:
            stmt.close()

    def _batch_committed(self, batch: BatchPayload) -> bool:
        rows = self._query(self._conn, "SELECT 1 FROM ingest_batches WHERE query_id ="
                           f" '{batch.query_id}' AND batch_id = {batch.batch_id}")
        self._conn.rollback()
        return bool(rows)

    def _files_already_loaded(self, batch: BatchPayload) -> dict[str, tuple[str, int]]:
        keys = ", ".join(f"'{f.key}'" for f in batch.files) or "''"
        rows = self._query(self._conn, "SELECT file_key, query_id, batch_id FROM ingest_files"
                                       f" WHERE file_key IN ({keys})")
        self._conn.rollback()
        return {str(r[0]): (str(r[1]), int(r[2])) for r in rows}

    def newest_loaded_file_at(self) -> datetime | None:
        """Modification time (UTC) of the newest file the last committed batch loaded.

        Safe to call from another thread than the batches' (the job's backlog check).
        """
        with self._conn_lock:
            if self._conn is None:
                self.connect()
            rows = self._query(self._conn, "SELECT DATE_FORMAT(newest_file_at,"
                               " '%Y-%m-%dT%H:%i:%s.%f') FROM ingest_batches WHERE"
                               " newest_file_at IS NOT NULL ORDER BY committed_at DESC LIMIT 1")
            self._conn.rollback()
        if not rows or rows[0][0] is None:
            return None
        return datetime.fromisoformat(rows[0][0]).replace(tzinfo=timezone.utc)

    def _rollback_quietly(self) -> None:
        try:
            self._conn.rollback()
        except Py4JJavaError:
            self.close()

    # -- small JDBC helpers -------------------------------------------------------------
    @staticmethod
    def _execute(conn, sql: str) -> None:
        stmt = conn.createStatement()
        try:
            stmt.execute(sql)
        finally:
            stmt.close()

    @staticmethod
    def _query(conn, sql: str) -> list[tuple]:
        stmt = conn.createStatement()
        try:
            rs = stmt.executeQuery(sql)
            width = rs.getMetaData().getColumnCount()
            rows = []
            while rs.next():
                rows.append(tuple(rs.getString(i) for i in range(1, width + 1)))
            return rows
        finally:
            stmt.close()
