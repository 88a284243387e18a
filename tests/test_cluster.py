"""The same job on a real Spark standalone cluster (master + two workers on loopback),
submitted with spark-submit: a batch is checked by tasks on every executor and streamed to
the driver's one transaction; a worker killed mid-batch costs nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import SPARK_SUBMIT
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator

# Run by the driver matrix too: .ci/run repeats these with TEST_JDBC_DRIVER=mysql.
pytestmark = pytest.mark.drivers

ON_EXECUTORS = "(executors, streamed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """`scripts/cluster.sh start 2` on free ports; stopped (by pid) afterwards."""
    import pyspark

    env = dict(os.environ, CLUSTER_DIR=str(tmp_path / "cluster"),
               SPARK_MASTER_PORT=str(free_port()), SPARK_MASTER_WEBUI_PORT=str(free_port()),
               SPARK_HOME=os.path.dirname(pyspark.__file__),
               SPARK_CLASS=str(Path(PYTHON).parent / "spark-class"))
    script = str(ROOT / "scripts" / "cluster.sh")
    try:
        subprocess.run(["bash", script, "start", "2"], env=env, check=True, timeout=180,
                       capture_output=True)
        yield {"url": f"spark://127.0.0.1:{env['SPARK_MASTER_PORT']}",
               "dir": tmp_path / "cluster", "events": tmp_path / "spark-events",
               "ui_port": free_port()}
    finally:
        subprocess.run(["bash", script, "stop"], env=env, timeout=120, capture_output=True)


def submit(cluster, *args: str) -> list[str]:
    """spark-submit of the job; every batch is checked by executors, not on the driver.

    The first batch waits for both executors (minRegisteredResourcesRatio), the driver's
    UI listens on a free loopback port, and Spark's listener events go to a plain log.
    """
    cluster["events"].mkdir(exist_ok=True)
    conf = {"spark.executor.memory": "512m",
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.ui.port": str(cluster["ui_port"]),
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": f"file://{cluster['events']}",
            "spark.eventLog.compress": "false",
            "spark.eventLog.rolling.enabled": "false"}
    settings = [item for key, value in conf.items() for item in ("--conf", f"{key}={value}")]
    return [SPARK_SUBMIT, "--master", cluster["url"], *settings,
            str(ROOT / "spark_streaming.py"), "--driver-batch-max-bytes", "0", *args]


def listener_events(cluster, name: str) -> list[dict]:
    """Spark's listener events called `name`, from the event logs of the test's jobs."""
    found = []
    for log in cluster["events"].iterdir():
        for line in log.read_text().splitlines():
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("Event") == name:
                found.append(event)
    return found


def finished_tasks(cluster, reason: str = "Success") -> Counter:
    """Tasks that ended for `reason`, per executor id."""
    return Counter(e["Task Info"]["Executor ID"]
                   for e in listener_events(cluster, "SparkListenerTaskEnd")
                   if e["Task End Reason"]["Reason"] == reason)


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_once_on_a_standalone_cluster_checks_on_every_executor(tmp_path, database, cluster):
    source = tmp_path / "data"
    run_generator(source, "--files", "6", "--events-per-file", "3000", "--seed", "31")
    done = subprocess.run(submit(cluster, "--source", str(source), "--checkpoint",
                                 str(tmp_path / "ck"), "--once", "--max-files-per-trigger",
                                 "6"),
                          cwd=ROOT, env=database.job_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert ON_EXECUTORS in done.stdout + done.stderr, (done.stdout + done.stderr)[-4000:]
    ids = events_in_db(database)
    assert sorted(ids) == sorted(expected_events(source))
    # One task per file, on both executors (ids "0" and "1"), none on the driver.
    tasks = finished_tasks(cluster)
    print(f"finished tasks per executor: {dict(tasks)}")
    assert set(tasks) == {"0", "1"} and sum(tasks.values()) >= 6, tasks
    assert any((cluster["dir"]).glob("work-*/app-*")), "no executor ran on the workers"


def executor_of_worker(cluster, worker: int) -> str | None:
    """The id of the executor worker `worker` runs (its folder in the worker's work dir)."""
    runs = list((cluster["dir"] / f"work-{worker}").glob("app-*/*"))
    return runs[0].name if runs else None


def active_tasks(cluster, executor: str) -> int:
    """Tasks running on `executor` now, from the REST API of the driver's loopback UI."""
    base = f"http://127.0.0.1:{cluster['ui_port']}/api/v1/applications"
    try:
        with urllib.request.urlopen(base, timeout=5) as r:
            app = json.load(r)[0]["id"]
        with urllib.request.urlopen(f"{base}/{app}/executors", timeout=5) as r:
            return next((e["activeTasks"] for e in json.load(r) if e["id"] == executor), 0)
    except (OSError, ValueError, IndexError):
        return 0  # the UI is not up yet, or already gone


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path, database, cluster):
    source, checkpoint, log = tmp_path / "data", tmp_path / "ck", tmp_path / "job.log"
    run_generator(source, "--files", "12", "--events-per-file", "40000", "--seed", "32")
    with open(log, "ab") as out:
        job = subprocess.Popen(submit(cluster, "--source", str(source), "--checkpoint",
                                      str(checkpoint), "--once", "--max-files-per-trigger",
                                      "4"), cwd=ROOT, env=database.job_env(),
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Wait for a task of a batch to run on worker 1's executor, then kill the worker.
        deadline, victim = time.monotonic() + 400, None
        while victim is None or not active_tasks(cluster, victim):
            assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            victim = executor_of_worker(cluster, 1)
            time.sleep(0.2)
        os.kill(int((cluster["dir"] / "worker-1.pid").read_text()), signal.SIGKILL)
        code = job.wait(timeout=900)
    finally:
        kill_group(job, signal.SIGTERM)
    if code != 0:  # the job gave up: a restart with the same checkpoint must finish
        again = subprocess.run(submit(cluster, "--source", str(source), "--checkpoint",
                                      str(checkpoint), "--once", "--max-files-per-trigger",
                                      "4"), cwd=ROOT, env=database.job_env(),
                               capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert ON_EXECUTORS in log.read_text(), log.read_text()[-3000:]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))
    assert database.query("SELECT count(*) FROM ingest_files")[0][0] == 12
    removed = listener_events(cluster, "SparkListenerExecutorRemoved")
    assert victim in {e["Executor ID"] for e in removed}, "the killed executor was not lost"
    print(f"worker 1 (executor {victim}) killed mid-batch: job"
          f" {'finished' if code == 0 else f'exited {code} and was restarted'},"
          f" {len(ids)} events exactly once; tasks finished per executor"
          f" {dict(finished_tasks(cluster))}, lost with their executor"
          f" {dict(finished_tasks(cluster, 'ExecutorLostFailure'))}")
