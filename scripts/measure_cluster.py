"""Measure one `--once` batch on a local 2-worker standalone cluster: completed tasks per
executor (from Spark's event log) and the driver's peak RSS (its JVM plus its Python),
sampled from /proc every 0.2 s.

    .venv/bin/python scripts/measure_cluster.py --rows 300000 --files 2 [--code DIR]

`--code` runs another checkout's job (a `git archive` of main, say) against the same
cluster, data and database server, to compare before and after. Loopback only; every
process it starts is stopped by pid; its database is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import MySQLSettings  # noqa: E402 - after the sys.path line above
from pipeline.ops.setup_db import setup_database  # noqa: E402 - after the sys.path line above
from tests.support.jobs import PYTHON  # noqa: E402 - after the sys.path line above
from tests.support.jobs import SPARK_SUBMIT  # noqa: E402 - after the sys.path line above
from tests.support.jobs import Database  # noqa: E402 - after the sys.path line above
from tests.support.jobs import Server  # noqa: E402 - after the sys.path line above
from tests.support.jobs import drop_database  # noqa: E402 - after the sys.path line above


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> tuple[str, int]:
    """(program name, resident KiB) of a process; ("", 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return "", 0
    name = next((line.split()[1] for line in status if line.startswith("Name:")), "")
    kib = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
    return name, kib


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the driver's JVM and its Python)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def sample_peak(pid: int, stop: threading.Event, peak: dict[str, int]) -> None:
    """Peak of the sum over the driver's processes, and peak per kind (java, python)."""
    while not stop.is_set():
        now: Counter = Counter()
        for p in descendants(pid):
            name, kib = rss_kib(p)
            now["java" if name == "java" else "python" if name.startswith("python")
                else "other"] += kib
        now["total"] = sum(now.values())
        for key, kib in now.items():
            peak[key] = max(peak.get(key, 0), kib)
        time.sleep(0.2)


def tasks_per_executor(event_dir: Path) -> Counter:
    done: Counter = Counter()
    for log in (p for p in event_dir.rglob("*") if p.is_file() and p.suffix != ".crc"):
        for line in log.read_text().splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("Event") == "SparkListenerTaskEnd" and \
                    event["Task End Reason"]["Reason"] == "Success":
                done[event["Task Info"]["Executor ID"]] += 1
    return done


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--code", default=str(ROOT))
    parser.add_argument("--data", help="reuse this folder of generated files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="measure-cluster-"))
    data = Path(args.data) if args.data else work / "data"
    if not args.data:
        subprocess.run([PYTHON, str(ROOT / "data_generator.py"), "--output-dir", str(data),
                        "--interval", "0", "--quiet", "--files", str(args.files),
                        "--events-per-file", str(args.rows // args.files), "--seed", "16",
                        "--start-time", "2026-01-01T00:00:00Z"], check=True)
    import pyspark

    env = dict(os.environ, CLUSTER_DIR=str(work / "cluster"),
               SPARK_MASTER_PORT=str(free_port()), SPARK_MASTER_WEBUI_PORT=str(free_port()),
               SPARK_HOME=os.path.dirname(pyspark.__file__),
               SPARK_CLASS=str(Path(PYTHON).parent / "spark-class"))
    cluster = str(ROOT / "scripts" / "cluster.sh")
    server = Server("127.0.0.1", 3306, "root", "")
    suffix = uuid.uuid4().hex[:10]
    db = Database(server, f"test_{suffix}", f"p_{suffix}", secrets.token_urlsafe(12))
    accounts = setup_database(MySQLSettings(host=server.host, port=server.port,
                                            database=db.name, user=db.user,
                                            password=db.password, ssl_mode="DISABLED",
                                            ssl_ca=None), server.user, server.password)
    events = work / "events"
    events.mkdir()
    try:
        subprocess.run(["bash", cluster, "start", "2"], env=env, check=True, timeout=180,
                       capture_output=True)
        job_env = db.job_env(SPARK_LOCAL_IP="127.0.0.1")
        command = [SPARK_SUBMIT, "--master", f"spark://127.0.0.1:{env['SPARK_MASTER_PORT']}",
                   "--conf", "spark.executor.memory=512m",
                   "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
                   "--conf", "spark.eventLog.enabled=true",
                   "--conf", f"spark.eventLog.dir=file://{events}",
                   "--conf", "spark.eventLog.compress=false",
                   "--conf", "spark.eventLog.rolling.enabled=false",
                   "--conf", f"spark.ui.port={free_port()}",
                   str(Path(args.code) / "spark_streaming.py"), "--source", str(data),
                   "--checkpoint", str(work / "ck"), "--once",
                   "--max-files-per-trigger", str(args.files)]
        started = time.monotonic()
        job = subprocess.Popen(command, cwd=args.code, env=job_env,
                               stdout=open(work / "job.log", "wb"), stderr=subprocess.STDOUT)
        stop, peak = threading.Event(), {}
        sampler = threading.Thread(target=sample_peak, args=(job.pid, stop, peak))
        sampler.start()
        try:
            code = job.wait(timeout=1500)
        finally:
            stop.set()
            sampler.join()
            if job.poll() is None:
                job.kill()
                job.wait()
        seconds = time.monotonic() - started
        rows = db.query("SELECT count(*) FROM events")[0][0]
        print(json.dumps({"code": args.code, "exit": code, "rows_in_files": args.rows,
                          "events_in_db": rows, "files": args.files,
                          "driver_peak_rss_mib": round(peak.get("total", 0) / 1024),
                          "peak_mib_by_kind": {k: round(v / 1024) for k, v in peak.items()},
                          "tasks_per_executor": dict(tasks_per_executor(events)),
                          "seconds": round(seconds, 1), "log": str(work / "job.log")}))
        return code
    finally:
        subprocess.run(["bash", cluster, "stop"], env=env, timeout=120, capture_output=True)
        drop_database(server, db.name, accounts)


if __name__ == "__main__":
    sys.exit(main())
