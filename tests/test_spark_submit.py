"""The job as a good citizen of Spark, run as a user runs it (`spark-submit`, or `python`
with a spark-defaults.conf): the user's settings win over the job's defaults, the few the
job needs are kept with one line each saying why, SIGTERM to spark-submit's pid stops after
the batch in flight with exit 0, the project's log format applies, and no temporary folder
is left behind. Spark's own event log is the record of the settings it ran with."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from pipeline.job.session import REQUIRED_CONF
from pipeline.job.session import job_defaults
from pipeline.job.session import settle
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import SPARK_SUBMIT
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator

FOUR_GIB = str(4 * 1024**3)
# Spark's default log pattern (log4j2-defaults.properties) starts with a yy/MM/dd date; the
# project's (config/log4j2.properties) and the job's own lines with the date and milliseconds.
SPARK_DEFAULT_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d ")
PROJECT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARN|WARNING|ERROR) ")
PYFILES = "pipeline-pyfiles-*"
# Printed by the JVM itself (not log4j) before anything else.
JVM_NOTICE = "WARNING: Using incubator modules"


def spark_properties(event_dir: Path) -> dict[str, str]:
    """The settings Spark ran with, from its event log's environment update."""
    logs = [p for p in event_dir.iterdir() if p.is_file()]
    assert len(logs) == 1, logs
    for line in logs[0].read_text().splitlines():
        event = json.loads(line)
        if event.get("Event") == "SparkListenerEnvironmentUpdate":
            return dict(event["Spark Properties"])
    raise AssertionError(f"no environment update in {logs[0]}")


def event_log_conf(event_dir: Path) -> dict[str, str]:
    event_dir.mkdir()
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{event_dir}",
            "spark.eventLog.compress": "false", "spark.eventLog.rolling.enabled": "false"}


def private_tmp(tmp_path: Path) -> Path:
    """A TMPDIR of the job's own, so parallel tests' folders do not count."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder


def submit(env: dict[str, str], conf: dict[str, str], *args: str, log: Path,
           java_options: str | None = None) -> subprocess.Popen:
    """Start `spark-submit spark_streaming.py` as a user types it; output (the JVM's and
    the job's) in `log`."""
    options = ["--driver-java-options", java_options] if java_options else []
    command = [SPARK_SUBMIT, "--master", "local[2]", *options,
               *(f"--conf={key}={value}" for key, value in conf.items()),
               str(ROOT / "spark_streaming.py"), *args]
    out = open(log, "wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def overriding_lines(output: str, key: str) -> list[str]:
    return [line for line in output.splitlines() if f"Spark setting {key}=" in line]


def test_user_settings_win_over_defaults_and_needed_ones_are_kept_with_a_reason():
    defaults = job_defaults("spark://h:7077")
    given = {"spark.sql.shuffle.partitions": "7", "spark.sql.files.ignoreMissingFiles": "false",
             "spark.sql.files.minPartitionNum": "1", "spark.network.io.preferDirectBufs": "true"}
    chosen = settle(given, defaults)
    assert "spark.sql.shuffle.partitions" not in chosen.applied
    assert "spark.network.io.preferDirectBufs" not in chosen.applied
    assert chosen.kept == {"spark.sql.shuffle.partitions": "7",
                           "spark.network.io.preferDirectBufs": "true"}
    assert {key: chosen.applied[key] for key in REQUIRED_CONF} == {
        key: value for key, (value, _why) in REQUIRED_CONF.items()}
    # One line per value replaced: minPartitionNum was given as the job needs it.
    assert len(chosen.overridden) == 1
    assert chosen.overridden[0].startswith(
        "Spark setting spark.sql.files.ignoreMissingFiles=false replaced by true: ")
    assert chosen.applied["spark.sql.files.openCostInBytes"] == FOUR_GIB
    assert set(chosen.applied) == set(defaults) - set(given) | set(REQUIRED_CONF)


def test_spark_submit_keeps_the_users_conf_logs_each_override_and_leaves_no_temp(
        tmp_path, database):
    source, events = tmp_path / "data", tmp_path / "events"
    source.mkdir()
    rows = 30_000  # about 1.4 MB: over the 1 MiB split size the user asks for below
    with (source / "events_big.csv").open("w") as f:
        f.write("event_id,user_id,product_id,event_type,price,event_time\n")
        for i in range(rows):
            f.write(f"e{i:06d},u{i % 50},p{i % 7},view,1.00,2026-10-25 02:30:00\n")
        f.write("bad,,p1,view,1.00,2026-10-25 02:30:00\n")
    assert (source / "events_big.csv").stat().st_size > 1024**2
    tmp = private_tmp(tmp_path)
    user = {
        "spark.sql.shuffle.partitions": "7",  # the job's default is 4
        "spark.sql.session.timeZone": "Europe/Paris",  # the job's default is UTC
        "spark.sql.codegen.wholeStage": "true",  # the job's default is false
        "spark.sql.files.ignoreMissingFiles": "false",  # needed: true
        "spark.sql.files.maxPartitionBytes": str(1024**2),  # needed: 4 GiB, files whole
        **event_log_conf(events),
    }
    log = tmp_path / "job.log"
    # --driver-batch-max-bytes 0: Spark tasks read and check the file, so the split size
    # and the session time zone would show in the rows if they took effect.
    job = submit(database.job_env(TMPDIR=str(tmp)), user, "--source", str(source),
                 "--checkpoint", str(tmp_path / "ck"), "--once", "--driver-batch-max-bytes",
                 "0", log=log,
                 java_options="-Dlog4j2.configurationFile=config/log4j2.properties")  # README's
    try:
        assert job.wait(timeout=400) == 0, log.read_text()[-4000:]
    finally:
        kill_group(job)
    output = log.read_text()

    used = spark_properties(events)
    assert used["spark.sql.shuffle.partitions"] == "7"
    assert used["spark.sql.session.timeZone"] == "Europe/Paris"
    assert used["spark.sql.codegen.wholeStage"] == "true"
    assert used["spark.sql.files.ignoreMissingFiles"] == "true"
    assert used["spark.sql.files.maxPartitionBytes"] == FOUR_GIB
    assert len(overriding_lines(output, "spark.sql.files.ignoreMissingFiles")) == 1, output
    assert len(overriding_lines(output, "spark.sql.files.maxPartitionBytes")) == 1, output
    for key in ("spark.sql.shuffle.partitions", "spark.sql.session.timeZone",
                "spark.sql.codegen.wholeStage"):
        assert overriding_lines(output, key) == [], output

    # The file was read whole (its last line keeps its number) and its times were read
    # in EVENT_TIME_ZONE (UTC), whatever Spark's session time zone.
    assert database.query("SELECT line_number, reason FROM events_rejected") == [
        (rows + 2, "missing_user_id")]
    assert database.query("SELECT count(*), min(event_id), max(event_id),"
                          " count(DISTINCT CAST(event_time AS CHAR)),"
                          " min(CAST(event_time AS CHAR)) FROM events") == [
        (rows, "e000000", f"e{rows - 1:06d}", 1, "2026-10-25 02:30:00.000000")]

    # With the flag, every line is in the project's format, from the first one on.
    lines = [line for line in output.splitlines() if line and not line.startswith(JVM_NOTICE)]
    assert PROJECT_LINE.match(lines[0]), lines[:5]
    assert "Using Spark's default log4j profile" not in output
    assert not [line for line in lines if SPARK_DEFAULT_LINE.match(line)], lines[:20]

    assert list(tmp.glob(PYFILES)) == []


def test_sigterm_to_spark_submit_stops_after_the_batch_in_flight_with_exit_0(
        tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "30", "--seed", "26")
    tmp = private_tmp(tmp_path)
    log = tmp_path / "job.log"
    job = submit(database.job_env(TMPDIR=str(tmp)), {}, "--source", str(source),
                 "--checkpoint", str(tmp_path / "ck"), log=log)
    try:
        deadline = time.monotonic() + 300
        while database.query("SELECT count(*) FROM ingest_batches")[0][0] < 1:
            assert job.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the job committed nothing in time"
            time.sleep(0.2)
        os.kill(job.pid, signal.SIGTERM)  # spark-submit's own pid, as a user would
        assert job.wait(timeout=120) == 0, log.read_text()[-4000:]
    finally:
        kill_group(job)
    output = log.read_text()
    assert "SIGTERM received: stopping after the batch in flight" in output, output[-4000:]
    assert "stopped cleanly" in output and "Traceback" not in output, output[-4000:]
    files = database.query("SELECT count(*) FROM ingest_files")[0][0]
    batches = database.query("SELECT count(*) FROM ingest_batches")[0][0]
    assert files == batches  # one file per batch, every batch whole
    # Without the flag Spark's INFO lines of its start are gone too (the job applies the
    # project's settings as it starts the session).
    assert not [line for line in output.splitlines()
                if SPARK_DEFAULT_LINE.match(line) and " INFO " in line], output[:4000]
    assert list(tmp.glob(PYFILES)) == []


def test_python_start_honours_spark_defaults_and_cleans_up_after_an_error(tmp_path,
                                                                           database):
    source, events, conf_dir = tmp_path / "data", tmp_path / "events", tmp_path / "conf"
    source.mkdir()
    conf_dir.mkdir()
    defaults = {"spark.sql.shuffle.partitions": "7",
                "spark.sql.files.ignoreMissingFiles": "false", **event_log_conf(events)}
    (conf_dir / "spark-defaults.conf").write_text(
        "".join(f"{key} {value}\n" for key, value in defaults.items()))
    tmp = private_tmp(tmp_path)
    env = database.job_env(TMPDIR=str(tmp), SPARK_CONF_DIR=str(conf_dir),
                           MYSQL_PASSWORD="wrong-" + database.password)
    # Spark starts, then the database refuses the login: exit 2 after Spark has stopped.
    done = subprocess.run([PYTHON, str(ROOT / "spark_streaming.py"), "--source", str(source),
                           "--checkpoint", str(tmp_path / "ck"), "--once"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-4000:]
    assert "refused the login" in output, output[-4000:]
    used = spark_properties(events)
    assert used["spark.sql.shuffle.partitions"] == "7"
    assert used["spark.sql.files.ignoreMissingFiles"] == "true"
    assert len(overriding_lines(output, "spark.sql.files.ignoreMissingFiles")) == 1, output
    assert list(tmp.glob(PYFILES)) == []
