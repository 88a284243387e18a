"""Runs the streaming query in phases, as `policy.CatchUpPolicy` decides, until the source is
drained (--once) or a signal stops it; the glue between the policy and Spark."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipeline.contract import SOURCE_GLOB
from pipeline.job.batch import BatchWriter
from pipeline.job.folder import IgnoredFileReporter
from pipeline.job.folder import SourceFolder
from pipeline.job.folder import spark_spelling
from pipeline.job.folder import write_heartbeat
from pipeline.job.generations import CheckpointGenerations
from pipeline.job.generations import RotationCheck
from pipeline.job.generations import files_logged
from pipeline.job.metrics import JobMetrics
from pipeline.job.options import JobOptions
from pipeline.job.options import local_path
from pipeline.job.policy import BACKLOG_CHECK_S
from pipeline.job.policy import BACKLOG_FILES
from pipeline.job.policy import OVERLOAD_CALM_S
from pipeline.job.policy import CatchUpPolicy
from pipeline.job.policy import Phase
from pipeline.job.session import QUERY_NAME
from pipeline.job.session import forward_jvm_signals
from pipeline.job.session import quiet_refusals
from pipeline.read.checkpoint import CheckpointLog
from pipeline.read.spark_source import read_lines
from pipeline.write.sink import MySQLSink

log = logging.getLogger(__name__)

# Fresh generations one process starts for damaged ones; past that the disk itself is suspect.
MAX_HEALS = 3


def start_query(spark: SparkSession, writer: BatchWriter, options: JobOptions,
                phase: Phase, checkpoint: str) -> StreamingQuery:
    """Start the streaming query of one phase, on the current checkpoint generation."""
    lines = read_lines(spark, options.source, phase.files_per_trigger, options.clean_source,
                       options.archive_dir)
    stream = (lines.writeStream.queryName(QUERY_NAME)
              .option("checkpointLocation", checkpoint).foreachBatch(writer))
    if phase.available_now:
        stream = stream.trigger(availableNow=True)
    elif options.trigger_interval_s > 0:
        stream = stream.trigger(processingTime=f"{options.trigger_interval_s} seconds")
    query = stream.start()
    writer.set_query_id(str(query.id))
    return query


class Supervisor:
    """Starts each phase's query, watches it, and stops it between batches."""

    def __init__(self, spark: SparkSession, sink: MySQLSink, writer: BatchWriter,
                 options: JobOptions, generations: CheckpointGenerations | None = None,
                 metrics: JobMetrics | None = None):
        self._spark = spark
        self._sink = sink
        self._writer = writer
        self._options = options
        self._generations = generations
        self._metrics = metrics
        self._policy = CatchUpPolicy(options.max_files_per_trigger, options.catch_up_files,
                                     options.once)
        # A new generation lists the source again: only a local folder says how much.
        rotating = generations is not None and local_path(options.source) is not None
        if options.checkpoint_rotate_files and generations is not None and not rotating:
            log.info("the source is not a local folder: the checkpoint is not rotated")
        self._rotation = RotationCheck(options.checkpoint_rotate_files if rotating else 0)
        self._stop = threading.Event()
        self._started_at = time.time()
        self._ignored = IgnoredFileReporter(options, writer.record_refused_entry)
        source = spark_spelling(options.source)
        self._folder = None if source is None else SourceFolder(
            source, sink.keys_loaded, self._started_at)
        if self._folder is not None:
            writer.on_commit = self._folder.committed
        self._announced = False
        self._heals = 0

    @property
    def _checkpoint(self) -> str:
        """Where the current query keeps its checkpoint."""
        if self._generations is None:
            return self._options.checkpoint
        return str(self._generations.location)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._request_stop)
                    for s in (signal.SIGINT, signal.SIGTERM)}
        restore_jvm_signals = forward_jvm_signals(self._spark, self._request_stop)
        try:
            while True:
                backlog = self._backlog()
                if self._rotation.due:
                    backlog = max(backlog, self._rotate())
                outcome = self._run_phase(self._policy.next_phase(backlog))
                if outcome is not None:
                    self._retire_old_generations()
                    return outcome
        finally:
            restore_jvm_signals()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _rotate(self) -> int:
        """Go on in a new checkpoint generation; the files its query will list again."""
        location = self._generations.switch()
        self._writer.use_checkpoint(CheckpointLog(self._spark, str(location)))
        relisted = self._rotation.relisted
        self._rotation.started(0, self._writer.files_taken)
        return relisted

    def _heal_if_damaged(self) -> bool:
        """Go on in a fresh generation when a file of the current one cannot be read (only
        then: any other error is left to stop the job); True when it did."""
        damage = self._generations.damage() if self._generations is not None else None
        if damage is None:
            return False
        if self._heals >= MAX_HEALS:
            log.error("%s, after %d fresh checkpoint generations in this run: check the disk"
                      " the checkpoint is on", damage, MAX_HEALS)
            return False
        self._heals += 1
        location = self._generations.heal(damage)
        self._writer.use_checkpoint(CheckpointLog(self._spark, str(location)))
        self._writer.last_error = None
        self._rotation.started(0, self._writer.files_taken)
        return True

    def _retire_old_generations(self) -> None:
        if self._generations is not None:
            self._generations.retire_old()

    def _loaded_files_in_source(self) -> int | None:
        """Loaded files still in the source folder: a new generation lists them again."""
        try:
            return self._folder.look().loaded
        except Exception as e:  # noqa: BLE001 - asked again later; batches report faults
            log.debug("rotation check postponed: %s", e)
            return None

    def _request_stop(self, signum, _frame) -> None:
        log.info("%s received: stopping after the batch in flight", signal.Signals(signum).name)
        self._stop.set()

    def _backlog(self) -> int:
        """Files waiting, when catch-up is on and the source is a local folder; else 0.

        Waiting: in the folder and not in ingest_files, whatever their modification times.
        """
        if not self._policy.enabled or self._folder is None:
            return 0
        try:
            return self._folder.look(wait=True).waiting
        except Exception as e:  # noqa: BLE001 - only a speed-up is lost; batches report faults
            log.debug("backlog check skipped: %s", e)
            return 0

    def _recent_batch_files(self) -> list[int]:
        since = time.monotonic() - OVERLOAD_CALM_S
        return [files for at, files in list(self._writer.recent_batches) if at >= since]

    def _run_phase(self, phase: Phase) -> int | None:
        """One query from start to end: an exit code, or None to start the next phase."""
        policy, options = self._policy, self._options
        self._writer.reopen()
        if self._folder is not None:
            self._folder.forget()
        if self._generations is not None:
            self._heal_if_damaged()
            self._retire_old_generations()
            self._rotation.started(files_logged(self._generations.location),
                                   self._writer.files_taken)
        query = start_query(self._spark, self._writer, options, phase, self._checkpoint)
        self._ignored.report()
        if not self._announced:
            log.info("streaming %s/%s -> MySQL, checkpoint %s, query id %s, Spark UI %s",
                     options.source, SOURCE_GLOB, self._checkpoint, query.id,
                     self._spark.sparkContext.uiWebUrl or "off")
            self._announced = True
        if phase.catching_up and not policy.overloaded:
            log.info("backlog of more than %d files: catching up with up to %d files per"
                     " micro-batch", BACKLOG_FILES, phase.files_per_trigger)
        if phase.available_now:
            phase_over = self._watch(query, None)
        elif policy.overloaded:
            phase_over = self._watch(
                query, lambda s: policy.overload_over(s, self._recent_batch_files()))
        else:
            phase_over = self._watch(
                query, lambda s: policy.steady_phase_over(self._backlog(), s))
        if self._stop.is_set() or phase_over:
            return self._stop_between_batches(query)
        exception = query.exception()
        if exception is not None:
            if self._heal_if_damaged():  # Spark failed on a file damaged since the start
                return None
            log.error("stopped by an error: %s",
                      self._writer.last_error or str(exception).splitlines()[0])
            return 1
        if phase.catching_up and not options.once:
            log.info("caught up: back to %d file(s) per micro-batch",
                     options.max_files_per_trigger)
            policy.caught_up()
            return None
        log.info("source drained: %d batch(es) committed", self._writer.batches)
        return 0

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
                self._retire_old_generations()
                self._update_metrics()
                last_beat = now
            if query.isActive and self._rotation.check(self._writer.files_taken,
                                                       self._loaded_files_in_source):
                return True
            if phase_over is not None and now - last_check >= BACKLOG_CHECK_S:
                last_check = now
                if query.isActive and phase_over(now - started):
                    return True
        return False

    def _update_metrics(self) -> None:
        """The gauges only the supervisor knows: backlog, checkpoint generation and size."""
        metrics = self._metrics
        if metrics is None:
            return
        if self._generations is not None:
            metrics.checkpoint_generation.set(self._generations.current)
        metrics.checkpoint_files.set(self._rotation.logged(self._writer.files_taken))
        if self._folder is None:
            return
        try:
            look = self._folder.look()
        except Exception as e:  # noqa: BLE001 - a gauge left as it was; batches report faults
            log.debug("backlog gauge not updated: %s", e)
            return
        metrics.set_backlog(look.waiting, look.oldest_wait_s)

    def _stop_between_batches(self, query: StreamingQuery) -> int | None:
        """Let the batch in flight commit, refuse the next, stop: an exit code when the job
        ends (a stop was asked for, or the batch in flight failed), else None."""
        with quiet_refusals(self._spark):
            self._writer.close_after_current_batch()
            query.stop()
        if self._writer.last_error:
            log.error("stopped; the batch in flight failed: %s", self._writer.last_error)
            return 1
        if self._stop.is_set():
            log.info("stopped cleanly after %d batch(es)", self._writer.batches)
            return 0
        return None
