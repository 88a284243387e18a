"""A Spark standalone cluster for the cluster scenario, and where its tasks ran.

The cluster is scripts/cluster.sh (master + workers on loopback, free ports, pids in its own
folder), stopped again by those pids. Where tasks ran comes from Spark's event log, read
after the job exited (no UI to poll while a short --once run is still up): every task's
end event names its executor, and each worker's work folder holds one sub-folder per
executor it launched (work-<i>/<app id>/<executor id>), so executors map to workers
without guessing from ports or host names.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

from bench.jobs import PYTHON
from bench.jobs import ROOT
from tests.support.mariadb_server import free_port

CLUSTER_SCRIPT = ROOT / "scripts" / "cluster.sh"


class StandaloneCluster:
    """`with StandaloneCluster(folder, workers) as c:` -> c.url; stopped by pid on exit."""

    def __init__(self, folder: Path, workers: int):
        import pyspark

        self.folder, self.workers = Path(folder), workers
        self.port, self.ui_port = free_port(), free_port()
        self.env = dict(os.environ, CLUSTER_DIR=str(self.folder),
                        SPARK_MASTER_PORT=str(self.port),
                        SPARK_MASTER_WEBUI_PORT=str(self.ui_port),
                        SPARK_HOME=os.path.dirname(pyspark.__file__),
                        SPARK_CLASS=str(Path(PYTHON).parent / "spark-class"))

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def __enter__(self) -> StandaloneCluster:
        try:
            subprocess.run(["bash", str(CLUSTER_SCRIPT), "start", str(self.workers)],
                           env=self.env, check=True, timeout=180, capture_output=True)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        # cluster.sh stop signals exactly the pids it recorded at start.
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop"], env=self.env, timeout=150,
                       capture_output=True)

    def executors_by_worker(self, app_id: str) -> dict[str, str]:
        """Executor id -> worker name, from the workers' work folders."""
        found = {}
        for i in range(1, self.workers + 1):
            app_dir = self.folder / f"work-{i}" / app_id
            if app_dir.is_dir():
                for executor in app_dir.iterdir():
                    found[executor.name] = f"worker-{i}"
        return found


def read_event_log(events_dir: Path, before: set[Path]) -> tuple[str | None, Counter]:
    """(application id, completed tasks per executor id) of the event log that appeared in
    `events_dir` since `before` was listed."""
    new = sorted(p for p in set(events_dir.iterdir()) - before
                 if p.is_file() and not p.name.startswith("."))
    if not new:
        return None, Counter()
    app_id, tasks = None, Counter()
    with open(new[-1], encoding="utf-8", errors="replace") as log:
        for line in log:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # the last line of a log cut short
            kind = event.get("Event")
            if kind == "SparkListenerApplicationStart":
                app_id = event.get("App ID")
            elif kind == "SparkListenerTaskEnd":
                info = event.get("Task Info", {})
                if not info.get("Failed") and not info.get("Killed"):
                    tasks[str(info.get("Executor ID"))] += 1
    return app_id, tasks


def tasks_per_worker(cluster: StandaloneCluster, app_id: str | None,
                     tasks: Counter) -> dict[str, int]:
    """Completed tasks per worker (every worker listed, 0 included) and on the driver."""
    where = cluster.executors_by_worker(app_id) if app_id else {}
    counts = {f"worker-{i}": 0 for i in range(1, cluster.workers + 1)}
    for executor, n in tasks.items():
        name = where.get(executor, "driver" if executor == "driver" else f"executor-{executor}")
        counts[name] = counts.get(name, 0) + n
    return counts
