"""The streaming job from start to stop: check the options, start Spark, connect the sink,
and hand over to the Supervisor. A newcomer reads on in `batch.py` (one micro-batch)."""

from __future__ import annotations

import logging

from pyspark.sql.streaming import StreamingQueryListener

from pipeline.config import Settings
from pipeline.contract import CommitHooks
from pipeline.job.batch import BatchWriter
from pipeline.job.options import JobOptions
from pipeline.job.options import check_paths
from pipeline.job.options import local_path
from pipeline.job.session import build_spark_session
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


def run(settings: Settings, options: JobOptions, hooks: CommitHooks | None = None) -> int:
    """Run the job until the source is drained (--once) or a signal stops it. Exit code."""
    options = check_paths(options)
    spark = build_spark_session(settings, options.verbose, options.prometheus,
                                local_checkpoint=local_path(options.checkpoint) is not None)
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
