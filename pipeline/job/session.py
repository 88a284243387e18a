"""The job's SparkSession: UTC, whole files per task, checkpoint settings for local disks,
Spark bound to loopback, the pipeline package shipped to Python workers, and quiet stops."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark import SparkConf
from pyspark import SparkContext
from pyspark.sql import SparkSession

from pipeline.config import PROJECT_ROOT
from pipeline.config import Settings

log = logging.getLogger(__name__)

QUERY_NAME = "events_to_mysql"
MICRO_BATCH_LOGGER = "org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution"
LOG4J_CONFIG = PROJECT_ROOT / "config" / "log4j2.properties"
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
# Each micro-batch's file scan checks the status of every file in it; past 32 files Spark
# does that in a Spark job of its own, which costs seconds to schedule. For a local folder a
# few thousand stat calls on the driver take milliseconds: 200 files at 100 per batch went
# from 19 s to 15.5 s (2026-12-01). Remote stores keep Spark's parallel listing.
LOCAL_SOURCE_CONF = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}
# Netty on heap buffers on a cluster's driver (see build_spark_session).
CLUSTER_DRIVER_CONF = {
    "spark.network.io.preferDirectBufs": "false",
    "spark.shuffle.io.preferDirectBufs": "false",
}
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
                        prometheus: bool = False, local_checkpoint: bool = True,
                        local_source: bool = True) -> SparkSession:
    """The session: UTC, files never split (line numbers), few shuffle partitions.

    Under `spark-submit` the master and deploy settings come from the command line; started
    with plain `python`, the job runs on SPARK_MASTER or `local[*]`.
    """
    builder = SparkSession.builder.appName(QUERY_NAME)
    master = settings.spark_master or "local[*]"
    given: set[str] = set()  # settings spark-submit was given: the user's, kept
    # Python workers need this interpreter's packages (the venv's pyarrow), not python3's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit
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
        # What spark-submit was given: its settings reach Python through the JVM, which
        # SparkConf reads only once the gateway to it is up.
        SparkContext._ensure_initialized()
        conf = SparkConf()
        given = {key for key, _ in conf.getAll()}
        master = conf.get("spark.master", "local[*]")
        wanted = loopback_conf(master, dict(os.environ), jvm_started=True)
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
        # Spark builds each micro-batch's scan before foreachBatch runs, even when the
        # batch is read on the driver; generating its code cost ~100 ms of the first batch
        # and ~0.4 s of first-batch planning in all (docs/benchmarks.md, backlog). The scan
        # only hands lines to Python, which does the work, so fused code buys nothing.
        .config("spark.sql.codegen.wholeStage", "false")
        # The UI's kill links would let anyone who reaches the port stop the job's query.
        .config("spark.ui.killEnabled", "false")
    )
    if not master.startswith("local"):
        # Spark packs small files into one task up to the split size; counting each file's
        # opening as the whole split size gives every file its own task, so a cluster's
        # executors share a batch (files are still never split: maxPartitionBytes above).
        builder = builder.config("spark.sql.files.openCostInBytes", str(4 * 1024**3))
        # Each file's checked rows come from its executor as one task result, fetched
        # through Netty; its pooled direct buffers keep the biggest result seen, outside
        # the heap and any --driver-memory. Heap buffers are returned by the collector.
        # (The setting is the application's: executors use heap buffers too.)
        for key, value in CLUSTER_DRIVER_CONF.items():
            if key not in given:
                builder = builder.config(key, value)
    for key, value in (LOCAL_CHECKPOINT_CONF.items() if local_checkpoint else ()):
        builder = builder.config(key, value)
    for key, value in (LOCAL_SOURCE_CONF.items() if local_source else ()):
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
    package = Path(__file__).resolve().parents[1]
    archive = Path(tempfile.mkdtemp(prefix="pipeline-pyfiles-")) / "pipeline.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for source in sorted(package.rglob("*.py")):
            zf.write(source, f"pipeline/{source.relative_to(package)}")
    spark.sparkContext.addPyFile(str(archive))


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
