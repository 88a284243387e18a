"""The streaming job: file source -> transforms -> MySQL sink, with a clean stop.

Wiring only; parsing lives in `pipeline.transforms`, database work in `pipeline.sink`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from operator import attrgetter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from pyspark import SparkConf
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from pipeline.checkpoint import CheckpointLog, SourceFile
from pipeline.config import PROJECT_ROOT, Settings
from pipeline.errors import FileRefused, PipelineError
from pipeline.prefetch import prefetched
from pipeline.sink import (BatchPayload, BatchRejected, BatchResult, CommitHooks, FilePayload,
                           MySQLSink, SinkError)
from pipeline.source_files import LocalFile, decode_uri
from pipeline.transforms import EVENTS_JSON, EVENTS_TSV, file_chunks, raw_lines, to_payload_chunks

log = logging.getLogger(__name__)

QUERY_NAME = "events_to_mysql"
HEARTBEAT_FILE = "_pipeline_heartbeat.json"  # read by pipeline.status
SOURCE_GLOB = "events_*.csv"
MICRO_BATCH_LOGGER = "org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution"
LOG4J_CONFIG = PROJECT_ROOT / "config" / "log4j2.properties"
# More files than this waiting is a backlog: time to take --catch-up-files per micro-batch.
BACKLOG_FILES = 10
BACKLOG_CHECK_S = 10
# Files arriving faster than the steady query takes them: after this many steady phases cut
# short at their first backlog check, stay at --catch-up-files per micro-batch until the
# batches of a whole OVERLOAD_CALM_S took no more than --max-files-per-trigger each.
OVERLOAD_SHORT_PHASES = 2
OVERLOAD_CALM_S = 30
# Spark's default checkpoint writer goes through Hadoop's FileContext, which on a local disk
# (without Hadoop's native library) forks `readlink` for every status call: about 20 forks of
# the JVM per micro-batch, 150 ms of a 350 ms trigger here. The FileSystem-based writer
# does the same write-temp-then-rename without them; rename is atomic on a local disk. Other
# checkpoint file systems (hdfs://, s3a://) keep Spark's default.
CHECKPOINT_MANAGER_CONF = "spark.sql.streaming.checkpointFileManagerClass"
LOCAL_CHECKPOINT_MANAGER = ("org.apache.spark.sql.execution.streaming.checkpointing."
                            "FileSystemBasedCheckpointFileManager")
# The file source logs every file it read, and every `compactInterval`-th batch rewrites
# all entries so far into `<n>.compact`. Spark keeps superseded log files for the last 100
# batches (spark.sql.streaming.minBatchesToRetain) *and* the last 10 minutes: a wait meant
# for object stores that list late. A local disk does not, yet at 10 files/s (6 batches/s)
# those minutes held hundreds of copies of the log: 30 MB of checkpoint after 5 minutes and
# 3,235 files. Compacting every 100 batches also rewrites the log a tenth as often.
LOCAL_CHECKPOINT_CONF = {
    CHECKPOINT_MANAGER_CONF: LOCAL_CHECKPOINT_MANAGER,
    "spark.sql.streaming.fileSource.log.cleanupDelay": "0s",
    "spark.sql.streaming.fileSource.log.compactInterval": "100",
}
# Local batches up to this size are checked on the driver in one go; bigger ones are
# streamed: checked chunk by chunk while the database takes the chunk before.
DRIVER_BATCH_MAX_BYTES = 4 * 1024 * 1024


class JobError(PipelineError):
    """The job cannot start or run; the message says what to fix."""


class StopRequested(Exception):
    """Raised inside a batch that began after a stop was asked for: it is not committed."""


@dataclass(frozen=True)
class JobOptions:
    """What the command line decides."""

    source: str
    checkpoint: str
    max_files_per_trigger: int = 1
    once: bool = False
    trigger_interval_s: float = 0.0
    verbose: bool = False
    prometheus: bool = False
    catch_up_files: int = 0  # 0: off
    driver_batch_max_bytes: int = DRIVER_BATCH_MAX_BYTES  # 0: every batch through Spark
    clean_source: str = "off"  # Spark's cleanSource: off, archive or delete
    archive_dir: str | None = None


def _local_path(uri: str) -> Path | None:
    """The local path of a plain path or file: URI; None for hdfs://, s3a:// and the like."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else uri).expanduser().resolve()
    return None


def check_paths(options: JobOptions) -> JobOptions:
    """Fail early and clearly on a missing source or an unwritable checkpoint (local paths)."""
    source = _local_path(options.source)
    if source is not None and not source.is_dir():
        raise JobError(f"source folder {source} does not exist: start the generator"
                       " (python data_generator.py) or create it")
    checkpoint = _local_path(options.checkpoint)
    if checkpoint is not None:
        try:
            checkpoint.mkdir(parents=True, exist_ok=True)
            probe = checkpoint / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise JobError(f"checkpoint folder {checkpoint} is not writable: {e.strerror}") from None
    archive = options.archive_dir
    if options.clean_source == "archive":
        if not archive:
            raise JobError("--clean-source archive needs --archive-dir")
        archive_path = _local_path(archive)
        if archive_path is not None and source is not None \
                and archive_path.is_relative_to(source):
            raise JobError(f"archive folder {archive_path} must be outside the source folder")
        archive = str(archive_path) if archive_path else archive
    # Spark wants absolute locations; keep URIs as given.
    return replace(options, source=str(source) if source else options.source,
                   checkpoint=str(checkpoint) if checkpoint else options.checkpoint,
                   archive_dir=archive)


# Spark's Prometheus endpoints: executors on the UI at /metrics/executors/prometheus, driver
# and streaming metrics at /metrics/prometheus.
PROMETHEUS_CONF = {
    "spark.ui.prometheus.enabled": "true",
    "spark.sql.streaming.metricsEnabled": "true",
    "spark.metrics.conf.*.sink.prometheusServlet.class":
        "org.apache.spark.metrics.sink.PrometheusServlet",
    "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
}


def build_spark_session(settings: Settings, verbose: bool = False,
                        prometheus: bool = False, local_checkpoint: bool = True) -> SparkSession:
    """The session: UTC, files never split (line numbers), few shuffle partitions.

    Under `spark-submit` the master and deploy settings come from the command line; started
    with plain `python`, the job runs on SPARK_MASTER or `local[*]`.
    """
    builder = SparkSession.builder.appName(QUERY_NAME)
    # Python workers need this interpreter's packages (the venv's pyarrow), not python3's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
        master = settings.spark_master or "local[*]"
        for key, value in loopback_conf(master, os.environ).items():
            builder = builder.config(key, value)
        builder = (
            builder.master(master)
            .config("spark.jars", str(settings.driver_jar))
            .config("spark.driver.extraJavaOptions",
                    f"-Dlog4j.configurationFile=file:{LOG4J_CONFIG}")
        )
        for key, value in (PROMETHEUS_CONF.items() if prometheus else ()):
            builder = builder.config(key, value)
    else:
        conf = SparkConf()  # what spark-submit was given
        given = {key for key, _ in conf.getAll()}
        wanted = loopback_conf(conf.get("spark.master", "local[*]"), dict(os.environ),
                               jvm_started=True)
        for key, value in wanted.items():
            if key not in given:
                builder = builder.config(key, value)
        if wanted.get("spark.ui.enabled") == "false" and "spark.ui.enabled" not in given:
            log.warning("Spark UI off: under spark-submit it would listen on every address;"
                        " start with SPARK_LOCAL_IP=127.0.0.1 spark-submit ... to have it on"
                        " loopback (docs/security.md)")
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        # One task reads a whole file in order, so line numbers are exact.
        .config("spark.sql.files.minPartitionNum", "1")
        .config("spark.sql.files.maxPartitionBytes", str(4 * 1024**3))
        .config("spark.sql.shuffle.partitions", "4")
        # A file deleted between listing and reading must not fail its batch forever.
        .config("spark.sql.files.ignoreMissingFiles", "true")
        # Spark caches the file statuses of every micro-batch under a key never asked for
        # again, up to 250 MB of driver heap; each file is read once, so cache nothing.
        .config("spark.sql.hive.filesourcePartitionFileCacheSize", "0")
        .config("spark.ui.showConsoleProgress", "false")
        # The UI's kill links would let anyone who reaches the port stop the job's query.
        .config("spark.ui.killEnabled", "false")
    )
    for key, value in (LOCAL_CHECKPOINT_CONF.items() if local_checkpoint else ()):
        builder = builder.config(key, value)
    with jvm_spared_from_sigterm():
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if verbose else "WARN")
    ship_package(spark)
    return spark


LOOPBACK = "127.0.0.1"


def loopback_conf(master: str, env: dict[str, str] | os._Environ, jvm_started: bool = False
                  ) -> dict[str, str]:
    """Keep a local-mode Spark (UI, driver RPC, block manager) on the loopback address.

    Spark binds all three to every interface unless told otherwise. The UI listens where
    SPARK_LOCAL_IP, read from the JVM's environment, says: it is set in ours before the JVM
    starts; under spark-submit the JVM runs already, so the UI is turned off instead. A
    SPARK_LOCAL_IP the user set wins, and so does a cluster master, whose executors on
    other hosts must reach the driver (docs/security.md says how to bind then).
    """
    if env.get("SPARK_LOCAL_IP") or not master.startswith("local"):
        return {}
    conf = {"spark.driver.bindAddress": LOOPBACK, "spark.driver.host": LOOPBACK}
    if jvm_started:
        conf["spark.ui.enabled"] = "false"
    else:
        env["SPARK_LOCAL_IP"] = LOOPBACK
    return conf


@contextmanager
def jvm_spared_from_sigterm() -> Iterator[None]:
    """Start Spark's JVM (when we start it) with SIGTERM ignored.

    A service manager stopping the job signals the whole process group. Were the JVM to die
    at once, the batch in flight would break off (harmlessly, it is replayed) and the job
    would exit 1 with py4j errors instead of stopping cleanly. An ignored signal stays
    ignored across exec, and the JVM does not take over a signal it inherited as ignored.
    The JVM still ends with the job: it exits when our end of its stdin pipe closes.
    A SIGTERM that arrives in the second or two of the launch is lost.
    """
    if "PYSPARK_GATEWAY_PORT" in os.environ or threading.current_thread() is not \
            threading.main_thread():
        yield  # under spark-submit the JVM is our parent and already running
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def ship_package(spark: SparkSession) -> None:
    """Make `pipeline` importable in Python workers, wherever they run (local or cluster)."""
    package = Path(__file__).resolve().parent
    archive = Path(tempfile.mkdtemp(prefix="pipeline-pyfiles-")) / "pipeline.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for source in sorted(package.glob("*.py")):
            zf.write(source, f"pipeline/{source.name}")
    spark.sparkContext.addPyFile(str(archive))


def read_lines(spark: SparkSession, options: JobOptions, files_per_trigger: int) -> DataFrame:
    """The file source: new `events_*.csv` files as raw lines with their file's path."""
    reader = (
        spark.readStream.format("text")
        .option("pathGlobFilter", SOURCE_GLOB)
        .option("maxFilesPerTrigger", files_per_trigger)
        # Spark silently skips files over a week older than the newest one; we never do.
        .option("maxFileAge", "3650d")
    )
    if options.clean_source != "off":
        # Spark moves or deletes a batch's files once the next batch is planned, so only
        # files whose batch is committed in the checkpoint (and so in MySQL) go.
        reader = reader.option("cleanSource", options.clean_source)
        if options.archive_dir:
            reader = reader.option("sourceArchiveDir", options.archive_dir)
    return (reader.load(options.source)
            .select(F.col("_metadata.file_path").alias("source_file"), F.col("value")))


ROUTE_DRIVER, ROUTE_STREAMED, ROUTE_SPARK = "driver", "driver, streamed", "spark"


def read_local_payload(source: SourceFile, settings: Settings, chunk_bytes: int,
                       event_format: str = EVENTS_JSON) -> FilePayload:
    """One local file read and checked on the driver: its rows, or why it has none."""
    payload = FilePayload(source.name, source.modified_at)
    for kind, rows, text in _checked_chunks(source, payload, settings, chunk_bytes,
                                            event_format):
        payload.add(kind, rows, text)
    return payload


def _checked_chunks(source: SourceFile, target: FilePayload, settings: Settings,
                    chunk_bytes: int, event_format: str) -> Iterator[tuple[str, int, str]]:
    """(kind, rows, payload) chunks of one local file; marks `target` missing or
    quarantined instead when the file is gone or not a regular file, and sets its facts.

    FileRefused escapes only when the file changed while it was read: its chunks may be
    sent already, so the caller must take the whole batch back.
    """
    try:
        local = LocalFile(source.local_path)
    except FileNotFoundError:
        target.mark_missing()
        log.warning("%s disappeared before it could be read; recorded as missing", source.name)
        return
    except FileRefused as e:
        target.quarantine(e.reason, e.detail)
        log.warning("%s quarantined as a whole: %s", source.name, e)
        return
    for kind, _chunk, rows, text in file_chunks(
            local.lines(), settings.event_types, settings.source_time_zone,
            event_format=event_format, chunk_bytes=chunk_bytes):
        yield kind, rows, text
    target.facts = local.facts()


def _regular_file_size(path: Path) -> int | None:
    """Size of a regular file (links not followed); None for anything else or nothing."""
    try:
        status = os.lstat(path)
    except OSError:
        return 0
    return status.st_size if stat.S_ISREG(status.st_mode) else None


class BatchWriter:
    """The foreachBatch function: the story of one batch, from its files to the commit.

    files (Spark's checkpoint log) -> route (decided once) -> checked chunks -> sink commit;
    if the database refuses the batch's data, its files are written one by one and the one
    that fails is quarantined as a whole, so no file can stop the stream.
    """

    def __init__(self, sink: MySQLSink, checkpoint: CheckpointLog, settings: Settings,
                 driver_batch_max_bytes: int = DRIVER_BATCH_MAX_BYTES):
        self._sink = sink
        self._driver_batch_max_bytes = driver_batch_max_bytes
        self._checkpoint = checkpoint
        self._settings = settings
        self._lock = threading.Lock()
        self._closing = False
        self._query_id: str | None = None
        self._query_id_ready = threading.Event()
        self.last_error: str | None = None
        self.batches = 0
        # (monotonic time, files) of recent batches: tells the supervisor the input rate.
        self.recent_batches: deque[tuple[float, int]] = deque(maxlen=10000)

    @property
    def query_id(self) -> str | None:
        return self._query_id

    def set_query_id(self, query_id: str) -> None:
        """Spark's query id keys the ledger and goes into SQL text: a UUID, nothing else."""
        self._query_id = str(uuid.UUID(query_id))
        self._query_id_ready.set()

    def close_after_current_batch(self) -> None:
        """Wait for a batch in flight to commit; later batches will not commit."""
        with self._lock:
            self._closing = True

    def reopen(self) -> None:
        """Accept batches again (for the next query on the same checkpoint)."""
        with self._lock:
            self._closing = False

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        with self._lock:
            if self._closing:
                log.info("batch %d not started: stopping (it runs again on restart)", batch_id)
                raise StopRequested(f"batch {batch_id} not started: stopping")
            try:
                self._write(batch_df, batch_id)
            except SinkError as e:
                self.last_error = str(e)
                raise
            except Exception as e:
                # Not expected: keep the whole story for whoever fixes it.
                log.exception("batch %d failed", batch_id)
                self.last_error = f"batch {batch_id} failed: {e}"
                raise

    def _write(self, batch_df: DataFrame, batch_id: int) -> None:
        started_at = datetime.now(timezone.utc)
        t0 = time.monotonic()
        if not self._query_id_ready.wait(timeout=120):
            raise SinkError("the query id never became known; cannot key the batch ledger")
        files = self._checkpoint.files_of_batch(batch_id)
        self.recent_batches.append((time.monotonic(), len(files)))
        route = self.route(files)
        if route == ROUTE_STREAMED:
            batch, result, route = self._write_streamed(files, batch_id, started_at)
        else:
            payloads = (self._read_on_driver(files) if route == ROUTE_DRIVER
                        else self._read_in_spark(batch_df, files))
            batch = BatchPayload(self._query_id, batch_id, payloads, started_at,
                                 int((time.monotonic() - t0) * 1000))
            try:
                result = self._sink.commit_batch(batch)
            except BatchRejected as e:
                result = self._commit_file_by_file(batch, e, self._commit_one_file)
        self.batches += 1
        log_batch(batch, result, route)

    def route(self, files: list[SourceFile]) -> str:
        """Where a batch is read and checked; decided here only.

        A Spark task costs about 0.3 s of fixed Python-worker overhead, far more than
        checking a few KB, and one file is never split across tasks anyway. So batches of
        local files are read right here on the driver: in one go up to
        --driver-batch-max-bytes, streamed chunk by chunk while the database writes above
        it. Files on hdfs://, s3a:// (or every batch, with --driver-batch-max-bytes 0) go
        through Spark, except a local batch holding something Spark must not open (a
        FIFO would block its task, a link would be followed): the driver refuses those.
        """
        paths = [f.local_path for f in files]
        if not all(paths):
            return ROUTE_SPARK
        sizes = [_regular_file_size(p) for p in paths]
        if self._driver_batch_max_bytes <= 0:
            return ROUTE_SPARK if None not in sizes else ROUTE_DRIVER
        total = sum(size or 0 for size in sizes)
        return ROUTE_STREAMED if total > self._driver_batch_max_bytes else ROUTE_DRIVER

    def _read_on_driver(self, files: list[SourceFile]) -> list[FilePayload]:
        return [read_local_payload(f, self._settings, self._sink.chunk_max_bytes)
                for f in files]

    def _read_in_spark(self, batch_df: DataFrame, files: list[SourceFile]
                       ) -> list[FilePayload]:
        """Every file's chunks made by Spark tasks, then gathered here by file."""
        chunks = to_payload_chunks(raw_lines(batch_df), self._settings.event_types,
                                   self._settings.source_time_zone,
                                   chunk_bytes=self._sink.chunk_max_bytes).collect()
        payloads = {f.name: FilePayload(f.name, f.modified_at) for f in files}
        for chunk in sorted(chunks, key=attrgetter("chunk")):
            name = decode_uri(chunk.source_file)[0]
            # A file the log did not list is still accounted for, never dropped.
            payloads.setdefault(name, FilePayload(name, None)).add(
                chunk.kind, chunk.rows, chunk.payload)
        for f in files:
            target = payloads[f.name]
            if target.rows_valid + target.rows_rejected:
                continue
            # No rows: an empty file, or one that vanished after Spark listed it (Spark
            # skips it with ignoreMissingFiles rather than fail this batch on every restart).
            if not self._checkpoint.exists(f.uri):
                target.mark_missing()
                log.warning("%s disappeared before it could be read; recorded as missing",
                            f.name)
        for f in files:  # what Spark read, described from the same file's bytes
            if f.local_path is not None and not payloads[f.name].missing:
                probe = read_local_payload(f, self._settings, self._sink.chunk_max_bytes)
                payloads[f.name].facts = probe.facts
        return list(payloads.values())

    def record_refused_entry(self, name: str, reason: str, detail: str) -> None:
        """Quarantine an entry of the source folder that no batch will ever hold."""
        entry = FilePayload(name, None)
        entry.quarantine(reason, detail)
        batch = BatchPayload(self._query_id, -1, [entry], datetime.now(timezone.utc), 0)
        with self._lock:
            self._commit_one_file(batch, entry)

    def _commit_one_file(self, batch: BatchPayload, f: FilePayload) -> BatchResult:
        return self._sink.commit_batch(BatchPayload(batch.query_id, batch.batch_id, [f],
                                                    batch.started_at, batch.prepare_ms),
                                       ledger=False)

    def _commit_file_by_file(self, batch: BatchPayload, error: Exception,
                             commit_file: Callable[[BatchPayload, FilePayload], BatchResult]
                             ) -> BatchResult:
        """Write a refused batch's files one transaction each, then its ledger row.

        A file that still fails alone is quarantined as a whole with the error. Each file's
        transaction holds its `ingest_files` row, so a replay after a crash skips the files
        already written; the ledger row comes last.
        """
        log.warning("batch %d: %s; writing its %d file(s) one by one to isolate the cause",
                    batch.batch_id, error, len(batch.files))
        for f in batch.files:
            try:
                commit_file(batch, f)
            except (BatchRejected, FileRefused) as e:
                reason = e.reason if isinstance(e, FileRefused) else "database_rejected"
                f.quarantine(reason, str(e))
                log.warning("batch %d: %s quarantined as a whole: %s", batch.batch_id,
                            f.source_file, e)
                self._commit_one_file(batch, f)
        return self._sink.commit_ledger(batch)

    def _write_streamed(self, files: list[SourceFile], batch_id: int, started_at: datetime
                        ) -> tuple[BatchPayload, BatchResult, str]:
        """Check a big batch on the driver, chunk by chunk, while the sink writes.

        One file is one Spark task anyway, so Spark would add nothing but a wait: checks
        and write run one after the other there. Here they overlap, on two cores.
        """
        batch = BatchPayload(self._query_id, batch_id,
                             [FilePayload(f.name, f.modified_at) for f in files], started_at, 0)
        event_format = EVENTS_TSV if self._sink.bulk_load else EVENTS_JSON
        sources = dict(zip((f.source_file for f in batch.files), files))

        def stream(targets: list[FilePayload], ledger: bool) -> BatchResult:
            def checked() -> Iterator[tuple[str, str, int, str]]:
                t0 = time.monotonic()
                for target in targets:
                    for kind, rows, text in _checked_chunks(
                            sources[target.source_file], target, self._settings,
                            self._sink.chunk_max_bytes, event_format):
                        yield target.source_file, kind, rows, text
                batch.prepare_ms = int((time.monotonic() - t0) * 1000)

            part = BatchPayload(batch.query_id, batch_id, targets, started_at, 0)
            with prefetched(checked(), name=f"checks-batch-{batch_id}") as chunks:
                return self._sink.commit_streamed(part, chunks, event_format, ledger=ledger)

        def commit_file(_batch: BatchPayload, target: FilePayload) -> BatchResult:
            target.rows_valid = target.rows_rejected = 0
            return stream([target], ledger=False)

        try:
            result = stream(batch.files, ledger=True)
        except (BatchRejected, FileRefused) as e:
            for target in batch.files:
                target.rows_valid = target.rows_rejected = 0
            result = self._commit_file_by_file(batch, e, commit_file)
        route = ROUTE_STREAMED + (" as LOAD DATA" if event_format == EVENTS_TSV else "")
        return batch, result, route


def log_batch(batch: BatchPayload, result: BatchResult, where: str) -> None:
    """One INFO line per batch with its figures."""
    rows_read = sum(f.rows_valid + f.rows_rejected for f in batch.files)
    rejected = sum(f.rows_rejected for f in batch.files)
    if result.replayed:
        log.info("batch %d: already committed before a restart (replay): nothing written",
                 batch.batch_id)
        return
    newest = max((f.modified_at for f in batch.files if f.modified_at), default=None)
    latency = (f", latency {(datetime.now(timezone.utc) - newest).total_seconds():.2f}s"
               if newest else "")
    skipped = f", {result.files_skipped} file(s) loaded earlier skipped" \
        if result.files_skipped else ""
    log.info("batch %d: %d file(s), %d rows read -> %d written, %d rejected, %d duplicate;"
             " checked in %d ms (%s), db %d ms (%d attempt%s)%s%s", batch.batch_id,
             len(batch.files), rows_read, result.rows_written, rejected, result.rows_duplicate,
             batch.prepare_ms, where,
             result.db_ms, result.attempts, "" if result.attempts == 1 else "s", latency, skipped)


class ProgressLogger(StreamingQueryListener):
    """Spark's own figures per trigger (planning, WAL, our sink's share), at DEBUG level.

    They cannot go into the ledger row: Spark knows them only after the sink has committed.
    """

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        progress = event.progress
        durations = ", ".join(f"{k} {v}" for k, v in sorted(progress.durationMs.items()))
        log.debug("spark progress batch %d: %d rows, %s ms", progress.batchId,
                  progress.numInputRows, durations)

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


def start_query(lines: DataFrame, writer: BatchWriter, options: JobOptions,
                available_now: bool) -> StreamingQuery:
    """Start the streaming query with its checkpoint and trigger."""
    stream = (
        lines.writeStream.queryName(QUERY_NAME)
        .option("checkpointLocation", options.checkpoint)
        .foreachBatch(writer)
    )
    if available_now:
        stream = stream.trigger(availableNow=True)
    elif options.trigger_interval_s > 0:
        stream = stream.trigger(processingTime=f"{options.trigger_interval_s} seconds")
    query = stream.start()
    writer.set_query_id(str(query.id))
    return query


def run(settings: Settings, options: JobOptions, hooks: CommitHooks | None = None) -> int:
    """Run the job until the source is drained (--once) or a signal stops it. Exit code."""
    options = check_paths(options)
    spark = build_spark_session(settings, options.verbose, options.prometheus,
                                local_checkpoint=_local_path(options.checkpoint) is not None)
    sink = MySQLSink(spark, settings, hooks)
    try:
        sink.connect()
        sink.ensure_schema()
        log.info("connected to %s:%d/%s%s", settings.mysql.host, settings.mysql.port,
                 settings.mysql.database,
                 f" over {sink.tls_version}" if sink.tls_version else " (no TLS)")
        writer = BatchWriter(sink, CheckpointLog(spark, options.checkpoint), settings,
                             options.driver_batch_max_bytes)
        if options.verbose:
            spark.streams.addListener(ProgressLogger())
        return Supervisor(spark, sink, writer, options).run()
    finally:
        sink.close()
        spark.stop()


def files_newer_than(folder: Path, newest: datetime | None) -> list[Path]:
    """The source files in `folder` modified after `newest` (all of them when None)."""
    limit = newest.timestamp() if newest else float("-inf")
    found = []
    for path in folder.glob(SOURCE_GLOB):
        try:
            if path.stat().st_mtime > limit:
                found.append(path)
        except FileNotFoundError:
            pass  # archived or deleted while we looked
    return found


class IgnoredFileReporter:
    """Says once per name which entries of the source folder the job will never read.

    A directory named like a source file is one Spark never lists: it is recorded as
    quarantined (through `record`), so it shows in the tables, not only in a log.
    """

    def __init__(self, options: JobOptions, record: Callable[[str, str, str], None]):
        self._folder = _local_path(options.source)
        self._record = record
        self._seen: set[str] = set()

    def report(self) -> None:
        if self._folder is None or not self._folder.is_dir():
            return
        for path in self._folder.iterdir():
            name = path.name
            if name in self._seen or name.startswith((".", "_")):
                continue
            if fnmatch.fnmatch(name, SOURCE_GLOB):
                if path.is_dir():
                    try:
                        self._record("file:" + str(path), "not_a_regular_file",
                                     "a directory: only regular files are read")
                    except PipelineError as e:
                        log.warning("could not record directory %s yet: %s", path, e)
                        continue
                    log.warning("quarantined %s: a directory, not a file", path)
                    self._seen.add(name)
                continue
            if not path.is_dir():
                log.warning("ignoring %s: only files named %s are read", path, SOURCE_GLOB)
            self._seen.add(name)


def write_heartbeat(options: JobOptions, started_at: float) -> None:
    """Tell `pipeline.status` the job is alive (local checkpoints only)."""
    checkpoint = _local_path(options.checkpoint)
    if checkpoint is None:
        return
    beat = {"pid": os.getpid(), "started_at": started_at, "updated_at": time.time(),
            "source": options.source}
    tmp = checkpoint / f".{HEARTBEAT_FILE}.tmp"
    tmp.write_text(json.dumps(beat))
    tmp.replace(checkpoint / HEARTBEAT_FILE)


class Supervisor:
    """Runs the query in phases until the source is drained (--once) or a signal stops it.

    Spark fixes maxFilesPerTrigger when a query starts, so catching up on a backlog is a
    phase of its own: an availableNow query taking --catch-up-files per micro-batch, after
    which the steady query (--max-files-per-trigger) starts again on the same checkpoint.
    The steady query is stopped between batches when a backlog builds up while it runs.
    When files keep arriving faster than the steady query takes them, switching back and
    forth would restart a query every few seconds; the job then stays in an open-ended
    catch-up query (overloaded) until the flow slows down.
    """

    def __init__(self, spark: SparkSession, sink: MySQLSink, writer: BatchWriter,
                 options: JobOptions):
        self._spark = spark
        self._sink = sink
        self._writer = writer
        self._options = options
        self._stop = threading.Event()
        self._started_at = time.time()
        self._ignored = IgnoredFileReporter(options, writer.record_refused_entry)
        self._announced = False
        self._overloaded = False
        self._short_steady_phases = 0
        self._caught_up_just_now = False

    def run(self) -> int:
        previous = {s: signal.signal(s, self._request_stop)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                caught_up_just_now, self._caught_up_just_now = self._caught_up_just_now, False
                catching_up = self._overloaded or self._backlog() > BACKLOG_FILES
                if catching_up and caught_up_just_now:
                    self._note_backlog(short=True)  # a backlog again as soon as it was gone
                available_now = self._options.once or (catching_up and not self._overloaded)
                outcome = self._run_phase(catching_up, available_now)
                if outcome is not None:
                    return outcome
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, signum, _frame) -> None:
        log.info("%s received: stopping after the batch in flight", signal.Signals(signum).name)
        self._stop.set()

    def _backlog(self) -> int:
        """Files waiting, when catch-up is on and the source is a local folder; else 0.

        Spark takes files oldest first, so the files newer than the newest one loaded are
        the backlog: one indexed query and a listing, however long the history.
        """
        options = self._options
        source = _local_path(options.source)
        if options.catch_up_files <= options.max_files_per_trigger or source is None:
            return 0
        try:
            newest = self._sink.newest_loaded_file_at()
        except Exception as e:  # noqa: BLE001 - only a speed-up is lost; batches report faults
            log.debug("backlog check skipped: %s", e)
            return 0
        return len(files_newer_than(source, newest))

    def _run_phase(self, catching_up: bool, available_now: bool) -> int | None:
        """One query from start to end: an exit code, or None to start the next phase."""
        options = self._options
        files = options.catch_up_files if catching_up else options.max_files_per_trigger
        self._writer.reopen()
        query = start_query(read_lines(self._spark, options, files), self._writer, options,
                            available_now)
        self._ignored.report()
        if not self._announced:
            log.info("streaming %s/%s -> MySQL, checkpoint %s, query id %s, Spark UI %s",
                     options.source, SOURCE_GLOB, options.checkpoint, query.id,
                     self._spark.sparkContext.uiWebUrl or "off")
            self._announced = True
        if catching_up and not self._overloaded:
            log.info("backlog of more than %d files: catching up with up to %d files per"
                     " micro-batch", BACKLOG_FILES, files)
        if available_now:
            phase_over = self._watch(query, None)
        elif self._overloaded:
            phase_over = self._watch(query, self._flow_slowed_down)
        else:
            phase_over = self._watch(query, self._backlog_built_up)
        if self._stop.is_set() or phase_over:
            failed = self._stop_between_batches(query)
            if failed:
                log.error("stopped; the batch in flight failed: %s", failed)
                return 1
            if self._stop.is_set():
                log.info("stopped cleanly after %d batch(es)", self._writer.batches)
                return 0
            return None
        exception = query.exception()
        if exception is not None:
            message = self._writer.last_error or str(exception).splitlines()[0]
            log.error("stopped by an error: %s", message)
            return 1
        if catching_up and not options.once:
            log.info("caught up: back to %d file(s) per micro-batch",
                     options.max_files_per_trigger)
            self._caught_up_just_now = True
            return None
        log.info("source drained: %d batch(es) committed", self._writer.batches)
        return 0

    def _backlog_built_up(self, phase_s: float) -> bool:
        """In the steady phase: True when it is time to catch up (or to stay caught up)."""
        if self._backlog() <= BACKLOG_FILES:
            return False
        self._note_backlog(short=phase_s < 2 * BACKLOG_CHECK_S)
        return True

    def _note_backlog(self, short: bool) -> None:
        """Count backlogs that came back at once; enough of them in a row mean overload."""
        self._short_steady_phases = self._short_steady_phases + 1 if short else 0
        if self._short_steady_phases >= OVERLOAD_SHORT_PHASES and not self._overloaded:
            self._overloaded = True
            log.info("files arrive faster than %d per micro-batch can take: staying at up to"
                     " %d files per micro-batch until the flow slows down",
                     self._options.max_files_per_trigger, self._options.catch_up_files)

    def _flow_slowed_down(self, phase_s: float) -> bool:
        """In the overloaded phase: True once the steady setting would keep up again."""
        if phase_s < OVERLOAD_CALM_S:
            return False
        since = time.monotonic() - OVERLOAD_CALM_S
        recent = [files for at, files in list(self._writer.recent_batches) if at >= since]
        if recent and max(recent) > self._options.max_files_per_trigger:
            return False
        self._overloaded = False
        self._short_steady_phases = 0
        log.info("the flow slowed down: back to %d file(s) per micro-batch",
                 self._options.max_files_per_trigger)
        return True

    def _watch(self, query: StreamingQuery, phase_over: Callable[[float], bool] | None
               ) -> bool:
        """Wait for the query to end or a stop; True when `phase_over` (asked every
        BACKLOG_CHECK_S with the seconds the phase has run) says to start the next phase."""
        started = last_check = time.time()
        last_beat = 0.0
        while query.isActive and not self._stop.is_set():
            try:
                query.awaitTermination(0.5)
            except StreamingQueryException:
                return False  # the caller reads query.exception()
            now = time.time()
            if now - last_beat >= 5:
                write_heartbeat(self._options, self._started_at)
                self._ignored.report()
                last_beat = now
            if phase_over is not None and now - last_check >= BACKLOG_CHECK_S:
                last_check = now
                if query.isActive and phase_over(now - started):
                    return True
        return False

    def _stop_between_batches(self, query: StreamingQuery) -> str | None:
        """Let the batch in flight commit, refuse the next, stop; the in-flight error if any."""
        with quiet_refusals(self._spark):
            self._writer.close_after_current_batch()
            query.stop()
        return self._writer.last_error


@contextmanager
def quiet_refusals(spark: SparkSession) -> Iterator[None]:
    """Keep Spark from logging our refusal of a batch that starts while we stop a query.

    Spark plans the next batch the moment one commits, so during a backlog one often starts
    between the stop request and query.stop(). Refusing it is the only safe move (returning
    would mark its files done), and Spark would print that refusal as a query failure with a
    Java and Python stack trace. Our own log says what happened to the batch in flight.
    """
    jvm = spark.sparkContext._jvm
    configurator = jvm.org.apache.logging.log4j.core.config.Configurator
    previous = jvm.org.apache.logging.log4j.LogManager.getLogger(MICRO_BATCH_LOGGER).getLevel()
    configurator.setLevel(MICRO_BATCH_LOGGER, jvm.org.apache.logging.log4j.Level.OFF)
    try:
        yield
    finally:
        configurator.setLevel(MICRO_BATCH_LOGGER, previous)
