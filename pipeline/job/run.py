"""The streaming job from start to stop: check the options, start Spark, connect the sink,
and hand over to the Supervisor. A newcomer reads on in `batch.py` (one micro-batch)."""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQueryListener

from pipeline.config import Settings
from pipeline.contract import CommitHooks
from pipeline.errors import JobError
from pipeline.job.batch import BatchWriter
from pipeline.job.generations import CheckpointGenerations
from pipeline.job.lock import checkpoint_lock
from pipeline.job.metrics import JobMetrics
from pipeline.job.options import JobOptions
from pipeline.job.options import check_paths
from pipeline.job.options import local_path
from pipeline.job.session import build_spark_session
from pipeline.job.session import stop_spark_session
from pipeline.job.status_page import StatusPage
from pipeline.job.supervisor import Supervisor
from pipeline.read.checkpoint import CheckpointLog
from pipeline.write.sink import MySQLSink

log = logging.getLogger(__name__)


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


def checkpoint_generations(options: JobOptions, hooks: CommitHooks | None
                           ) -> CheckpointGenerations | None:
    """The generations of a local checkpoint; None for hdfs://, s3a:// (never rotated)."""
    root = local_path(options.checkpoint)
    if root is None:
        if options.checkpoint_rotate_files:
            log.info("checkpoint %s is not local: it is not rotated", options.checkpoint)
        return None
    try:
        return CheckpointGenerations(root, hooks)
    except ValueError as e:
        raise JobError(f"{e}: restore it, or move the checkpoint folder aside to start a"
                       " new one (the ledger skips files loaded before)") from None


def run(settings: Settings, options: JobOptions, hooks: CommitHooks | None = None) -> int:
    """Run the job until the source is drained (--once) or a signal stops it. Exit code."""
    options = check_paths(options)
    # Before Spark starts: a second job on the checkpoint stops at once, in one line.
    with checkpoint_lock(local_path(options.checkpoint)):
        return _run_locked(settings, options, hooks)


def _run_locked(settings: Settings, options: JobOptions, hooks: CommitHooks | None) -> int:
    spark = build_spark_session(settings, options.verbose, options.prometheus,
                                local_checkpoint=local_path(options.checkpoint) is not None,
                                local_source=local_path(options.source) is not None)
    sink = MySQLSink(spark, settings, hooks)
    try:
        sink.connect()
        sink.ensure_schema()
        log.info("connected to %s:%d/%s%s with %s", settings.mysql.host, settings.mysql.port,
                 settings.mysql.database,
                 f" over {sink.tls_version}" if sink.tls_version else " (no TLS)",
                 sink.db.driver_info.label)
        generations = checkpoint_generations(options, hooks)
        location = str(generations.location) if generations else options.checkpoint
        metrics = JobMetrics() if options.metrics_port else None
        writer = BatchWriter(sink, CheckpointLog(spark, location), settings,
                             options.driver_batch_max_bytes, metrics)
        if metrics is not None:
            metrics.serve(options.metrics_host, options.metrics_port,
                          StatusPage(settings, options, generations))
        if options.verbose:
            spark.streams.addListener(ProgressLogger())
        return Supervisor(spark, sink, writer, options, generations, metrics).run()
    finally:
        sink.close()
        stop_spark_session(spark)
