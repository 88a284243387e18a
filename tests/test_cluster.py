"""The same job on a real Spark standalone cluster (master + two workers on loopback),
submitted with spark-submit; a worker killed mid-stream costs nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import SPARK_SUBMIT
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator


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
               "dir": tmp_path / "cluster"}
    finally:
        subprocess.run(["bash", script, "stop"], env=env, timeout=120, capture_output=True)


def submit(cluster, *args: str) -> list[str]:
    """spark-submit of the job; every batch is checked by executors, not on the driver."""
    return [SPARK_SUBMIT, "--master", cluster["url"], "--conf", "spark.executor.memory=512m",
            str(ROOT / "spark_streaming.py"), "--driver-batch-max-bytes", "0", *args]


def test_once_on_a_standalone_cluster_loads_exactly_the_valid_rows(tmp_path, database, cluster):
    source = tmp_path / "data"
    run_generator(source, "--files", "5", "--seed", "31")
    done = subprocess.run(submit(cluster, "--source", str(source), "--checkpoint",
                                 str(tmp_path / "ck"), "--once"),
                          cwd=ROOT, env=database.job_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert sorted(events_in_db(database)) == sorted(expected_events(source))
    # The executors really were the cluster's: the workers' logs show the application.
    assert any((cluster["dir"]).glob("work-*/app-*")), "no executor ran on the workers"


@pytest.mark.slow
def test_a_worker_killed_mid_stream_loses_nothing(tmp_path, database, cluster):
    source, checkpoint, log = tmp_path / "data", tmp_path / "ck", tmp_path / "job.log"
    generator = subprocess.Popen([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                                  str(source), "--interval", "0.5", "--files", "40", "--seed",
                                  "32", "--quiet"], stdout=subprocess.DEVNULL)
    with open(log, "ab") as out:
        job = subprocess.Popen(submit(cluster, "--source", str(source), "--checkpoint",
                                      str(checkpoint)), cwd=ROOT, env=database.job_env(),
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while database.query("SELECT count(*) FROM ingest_batches")[0][0] < 3:
            assert job.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        victim = int((cluster["dir"] / "worker-1.pid").read_text())
        os.kill(victim, signal.SIGKILL)
        generator.wait(timeout=120)
        deadline = time.monotonic() + 300
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 40:
            if job.poll() is not None:  # the job gave up: a restart must finish the work
                break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        survived = job.poll() is None
    finally:
        generator.kill()
        kill_group(job, signal.SIGTERM)
    if not survived:
        again = subprocess.run(submit(cluster, "--source", str(source), "--checkpoint",
                                      str(checkpoint), "--once"), cwd=ROOT,
                               env=database.job_env(), capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))
    print(f"worker killed mid-stream: job {'kept running' if survived else 'restarted'},"
          f" {len(ids)} events exactly once")
