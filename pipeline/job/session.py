"""The job's SparkSession: the few settings correct results need (kept over the user's own,
with a warning), the defaults the job chooses (the user's own `--conf` wins), Spark bound to
loopback, the project's log settings, the pipeline package shipped to Python workers, and
quiet stops. docs/cluster.md#spark-settings lists every setting."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

from py4j.protocol import Py4JError
from pyspark import SparkConf
from pyspark import SparkContext
from pyspark.java_gateway import ensure_callback_server_started
from pyspark.sql import SparkSession

from pipeline.config import Settings
from pipeline.resources import data_file

log = logging.getLogger(__name__)

QUERY_NAME = "events_to_mysql"
MICRO_BATCH_LOGGER = "org.apache.spark.sql.execution.streaming.runtime.MicroBatchExecution"
LOG4J_CONFIG = data_file("config", "log4j2.properties")
# What Spark logs with when nobody gave it a log configuration.
SPARK_DEFAULT_LOG_PROFILE = "org/apache/spark/log4j2-defaults.properties"

WHOLE_FILES = ("one task reads each file whole and in order, so line numbers are exact"
               " (a split file would number its second part from 1)")
# Needed for correct results: kept over a value the user gave, with one warning line each.
REQUIRED_CONF = {
    "spark.sql.files.minPartitionNum": ("1", WHOLE_FILES),
    "spark.sql.files.maxPartitionBytes": (str(4 * 1024**3), WHOLE_FILES),
    "spark.sql.files.ignoreMissingFiles": (
        "true", "a file deleted between listing and reading would fail its batch again on"
                " every restart; the job records it as missing instead"),
}
# The job's defaults on every master; a value the user gave wins.
DEFAULT_CONF = {
    # Rows are checked in Python with EVENT_TIME_ZONE, so this only sets how Spark itself
    # shows times (its logs, the UI): in UTC, as the tables store them.
    "spark.sql.session.timeZone": "UTC",
    # The query has no shuffle; an ad-hoc one on this small data needs few partitions.
    "spark.sql.shuffle.partitions": "4",
    # Spark caches the file statuses of every micro-batch under a key never asked for
    # again, up to 250 MB of driver heap; each file is read once, so cache nothing.
    "spark.sql.hive.filesourcePartitionFileCacheSize": "0",
    "spark.ui.showConsoleProgress": "false",
    # Spark builds each micro-batch's scan before foreachBatch runs, even when the batch is
    # read on the driver; the scan only hands lines to Python, which does the work, so
    # generating fused code for it only delays the first batch (docs/benchmarks.md).
    "spark.sql.codegen.wholeStage": "false",
    # The UI's kill links would let anyone who reaches the port stop the job's query.
    "spark.ui.killEnabled": "false",
}
# With a master that is not local (see docs/cluster.md#how-a-batch-is-split-on-a-cluster).
CLUSTER_CONF = {
    # Spark packs small files into one task up to the split size; counting each file's
    # opening as the whole split size gives every file its own task, so a cluster's
    # executors share a batch (files are never split either way: REQUIRED_CONF).
    "spark.sql.files.openCostInBytes": str(4 * 1024**3),
    # Each file's checked rows come from its executor as one task result, fetched through
    # Netty; its pooled direct buffers keep the biggest result seen, outside the heap and
    # any --driver-memory. Heap buffers are returned by the collector. (The setting is the
    # application's: executors use heap buffers too.)
    "spark.network.io.preferDirectBufs": "false",
    "spark.shuffle.io.preferDirectBufs": "false",
}
# Spark's default checkpoint writer goes through Hadoop's FileContext, which on a local disk
# (without Hadoop's native library) forks `readlink` for every status call, several times
# per micro-batch. The FileSystem-based writer does the same write-temp-then-rename without
# them; rename is atomic on a local disk. Other checkpoint file systems (hdfs://, s3a://)
# keep Spark's default.
CHECKPOINT_MANAGER_CONF = "spark.sql.streaming.checkpointFileManagerClass"
LOCAL_CHECKPOINT_MANAGER = ("org.apache.spark.sql.execution.streaming.checkpointing."
                            "FileSystemBasedCheckpointFileManager")
# The file source logs every file it read, and every `compactInterval`-th batch rewrites
# all entries so far into `<n>.compact`. Spark keeps superseded log files for the last 100
# batches (spark.sql.streaming.minBatchesToRetain) *and* the last 10 minutes: a wait meant
# for object stores that list late. A local disk does not, yet at a steady flow those
# minutes hold hundreds of copies of the log. Compacting every 100 batches also rewrites
# the log a tenth as often. (Figures: docs/benchmarks.md#spark-settings-and-what-they-bought.)
LOCAL_CHECKPOINT_CONF = {
    CHECKPOINT_MANAGER_CONF: LOCAL_CHECKPOINT_MANAGER,
    "spark.sql.streaming.fileSource.log.cleanupDelay": "0s",
    "spark.sql.streaming.fileSource.log.compactInterval": "100",
}
# Each micro-batch's file scan checks the status of every file in it; past 32 files Spark
# does that in a Spark job of its own, which costs seconds to schedule, where a few
# thousand stat calls on the driver take milliseconds for a local folder. Remote stores
# keep Spark's parallel listing.
LOCAL_SOURCE_CONF = {
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
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


def job_defaults(master: str, prometheus: bool = False, local_checkpoint: bool = True,
                 local_source: bool = True) -> dict[str, str]:
    """The job's default Spark settings for this master, checkpoint and source."""
    conf = dict(DEFAULT_CONF)
    if not master.startswith("local"):
        conf.update(CLUSTER_CONF)
    if local_checkpoint:
        conf.update(LOCAL_CHECKPOINT_CONF)
    if local_source:
        conf.update(LOCAL_SOURCE_CONF)
    if prometheus:
        conf.update(PROMETHEUS_CONF)
    return conf


@dataclass(frozen=True)
class SparkSettings:
    """What the job sets, and what it did with the settings the user gave."""

    applied: dict[str, str]
    kept: dict[str, str] = field(default_factory=dict)  # the user's, over the job's defaults
    overridden: list[str] = field(default_factory=list)  # one log line per user value replaced


def settle(given: dict[str, str], defaults: dict[str, str]) -> SparkSettings:
    """The user's settings (`given`) win over the job's `defaults`; REQUIRED_CONF wins over
    both, and every value of the user's it replaces gets a line saying why."""
    applied = {key: value for key, value in defaults.items() if key not in given}
    kept = {key: given[key] for key in defaults if key in given and given[key] != defaults[key]}
    overridden = []
    for key, (value, why) in REQUIRED_CONF.items():
        applied[key] = value
        if key in given and given[key] != value:
            overridden.append(f"Spark setting {key}={given[key]} replaced by {value}: {why}")
    return SparkSettings(applied, kept, overridden)


def build_spark_session(settings: Settings, verbose: bool = False,
                        prometheus: bool = False, local_checkpoint: bool = True,
                        local_source: bool = True) -> SparkSession:
    """The session: whole files per task, missing files skipped, the job's defaults where
    the user gave no value of their own (spark-submit --conf, spark-defaults.conf).

    Under `spark-submit` the master and deploy settings come from the command line; started
    with plain `python`, the job runs on SPARK_MASTER or `local[*]`.
    """
    # Python workers need this interpreter's packages (the venv's pyarrow), not python3's.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # launched by spark-submit
    launch: dict[str, str] = {}
    if not submitted:
        master = settings.spark_master or "local[*]"
        launch = {
            **loopback_conf(master, os.environ),
            "spark.master": master,
            "spark.jars": str(settings.driver_jar),
            "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile=file:{LOG4J_CONFIG}",
        }
    given = start_jvm(launch)
    master = given.get("spark.master", "local[*]")
    given = {key: value for key, value in given.items() if key not in launch}
    defaults = job_defaults(master, prometheus and not submitted, local_checkpoint,
                            local_source)
    if submitted:
        loopback = loopback_conf(master, dict(os.environ), jvm_started=True)
        defaults.update(loopback)
        if loopback.get("spark.ui.enabled") == "false" and "spark.ui.enabled" not in given:
            log.warning("Spark UI off: under spark-submit it would listen on every address;"
                        " start with SPARK_LOCAL_IP=127.0.0.1 spark-submit ... to have it on"
                        " loopback (docs/security.md)")
        use_project_logging(SparkContext._jvm)
    chosen = settle(given, defaults)
    for line in chosen.overridden:
        log.warning("%s", line)
    if chosen.kept:
        log.info("Spark settings of yours kept over the job's defaults: %s",
                 ", ".join(f"{key}={value}" for key, value in sorted(chosen.kept.items())))
    builder = SparkSession.builder.appName(QUERY_NAME)
    for key, value in {**launch, **chosen.applied}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("INFO" if verbose else "WARN")
    ship_package(spark)
    return spark


def start_jvm(launch: dict[str, str]) -> dict[str, str]:
    """Start Spark's JVM with the `launch` settings (none: spark-submit started it already);
    every setting it has, the user's (spark-submit --conf, spark-defaults.conf) included.

    Spark reads those settings only as the JVM starts, and Python sees them only once the
    gateway to it is up: so the JVM is started first, and the job's own settings are
    chosen knowing the user's.
    """
    conf = SparkConf(loadDefaults=False).setAll(launch.items()) if launch else None
    with jvm_spared_from_sigterm():
        SparkContext._ensure_initialized(conf=conf)
    return dict(SparkConf().getAll())


def use_project_logging(jvm) -> None:
    """Spark's logging as config/log4j2.properties says, unless the user gave their own.

    Under spark-submit the JVM has configured its logging before the job starts: with no
    configuration given, Spark's default profile, which logs some 40 INFO lines while the
    session starts, in its own time format. The lines SparkSubmit writes before the job
    starts need `--driver-java-options -Dlog4j2.configurationFile=...` (docs/cluster.md).
    """
    # Spark picks its logging again when its first class logs (SparkSubmit undid its own
    # choice for the application): have that happen now, so that ours stays.
    jvm.org.apache.spark.SparkConf(False).log()
    context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
    source = context.getConfiguration().getConfigurationSource().getLocation()
    if source and source.endswith(SPARK_DEFAULT_LOG_PROFILE):
        jvm.org.apache.logging.log4j.core.config.Configurator.reconfigure(
            jvm.java.io.File(str(LOG4J_CONFIG)).toURI())


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


def ship_package(spark: SparkSession) -> Path:
    """Make `pipeline` importable in Python workers, wherever they run (local or cluster).

    The zip stays in its temporary folder while Spark runs (its file server hands it to
    executors that join later); `stop_spark_session` removes it, and so does the exit of
    a process that never called that.
    """
    package = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="pipeline-pyfiles-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    try:
        archive = folder / "pipeline.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for source in sorted(package.rglob("*.py")):
                zf.write(source, f"pipeline/{source.relative_to(package)}")
        spark.sparkContext.addPyFile(str(archive))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    _shipped[id(spark)] = folder
    return folder


_shipped: dict[int, Path] = {}  # id(session) -> the folder of its shipped package


def stop_spark_session(spark: SparkSession) -> None:
    """Stop Spark, then remove the package folder shipped at its start, even on error."""
    try:
        spark.stop()
    finally:
        folder = _shipped.pop(id(spark), None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


class _SignalToPython:
    """A JVM signal handler that calls `on_signal(signum, None)` in Python, as Python's own
    signal handlers are called."""

    def __init__(self, on_signal: Callable[[int, object], None]):
        self._on_signal = on_signal

    def handle(self, jvm_signal) -> None:
        self._on_signal(signal.Signals[f"SIG{jvm_signal.getName()}"], None)

    class Java:
        implements = ["sun.misc.SignalHandler"]


def forward_jvm_signals(spark: SparkSession, on_signal: Callable[[int, object], None]
                        ) -> Callable[[], None]:
    """Under spark-submit, have SIGTERM and SIGINT to the JVM call `on_signal`; a function
    that gives the JVM its own handlers back.

    spark-submit's process is the JVM (its script execs Java) and our parent, so that is
    the pid a user or a service manager signals. The JVM's own handlers would exit at once
    with 143 (130 for SIGINT), breaking off the batch in flight; the job instead stops
    after it, as when started with python, and so does spark-submit, with the job's exit
    code. A signal in the seconds before the job's query starts still ends the JVM at once.
    """
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return lambda: None  # started with python: the JVM ignores SIGTERM, Python handles it
    context = spark.sparkContext
    ensure_callback_server_started(context._gateway)
    jvm_signal = context._jvm.sun.misc.Signal
    handler = _SignalToPython(on_signal)
    previous = {name: jvm_signal.handle(jvm_signal(name), handler) for name in ("TERM", "INT")}

    def restore() -> None:
        try:
            for name, old in previous.items():
                jvm_signal.handle(jvm_signal(name), old)
        except Py4JError:
            pass  # the JVM is gone already: nothing left to restore

    return restore


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
