"""Spark job subprocesses: own session, stopped by process group, every wait bounded.

A pyspark job is two processes, the Python driver and the JVM it launches; both share the
session started here, so signalling the group reaches both and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.jobs import MYSQL_DRIVER_ENV
from tests.support.jobs import MYSQL_TEST_JAR

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DRIVER_JAR = ROOT / "jars" / "mariadb-java-client.jar"
# MySQL Connector/J as `setup.sh --for-tests` fetches it: the second driver ours is run with.
MYSQL_DRIVER_JAR = MYSQL_TEST_JAR
DRIVERS = {"mariadb": {"JDBC_DRIVER_JAR": str(DRIVER_JAR)}, "mysql": MYSQL_DRIVER_ENV}
SPARK_MASTER = "local[2]"


class JobFailed(Exception):
    """A job exited badly or ran out of time; the message carries the end of its log."""


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if the bench itself is killed, the job leader goes too; its JVM then
    # exits on its own when the gateway's pipe breaks.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def spark_env(**extra: str) -> dict[str, str]:
    """Environment for a Spark contender: loopback only, local[2], no UI, no .env."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MYSQL_", "JDBC_", "PYSPARK_", "SPARK_"))}
    env.update(
        PATH=f"{Path(PYTHON).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PYSPARK_PYTHON=PYTHON,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_MASTER=SPARK_MASTER,
        # Our job has no flag for the UI; pyspark passes these to the JVM it launches.
        PYSPARK_SUBMIT_ARGS="--conf spark.ui.enabled=false pyspark-shell",
        PIPELINE_ENV_FILE=os.devnull,
    )
    env.update(extra)
    return env


def proc_status(pid: int) -> dict[str, str] | None:
    """The fields of /proc/<pid>/status (None once the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return dict(line.split(":", 1) for line in status.splitlines() if ":" in line)


class JobProcess:
    """One job run: start(), then wait() for --once runs or stop() for streaming ones."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ended_at: float | None = None

    def start(self) -> JobProcess:
        log = open(self.log_path, "ab")
        try:
            self.started_at = time.time()
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for a --once run to exit; on timeout kill it and raise."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop(grace=5)
            raise JobFailed(f"{self.name}: still running after {timeout:.0f}s, killed\n"
                            f"{self.log_tail()}") from None
        self.ended_at = time.time()
        self._reap_group()
        return rc

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM the group (like Ctrl-C in a terminal), SIGKILL it after `grace` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(30)
        if self.ended_at is None:
            self.ended_at = time.time()
        self._reap_group()
        return self.proc.returncode

    def _reap_group(self) -> None:
        # The leader is gone; a JVM that outlived it (it should not) is killed too.
        if self.group_pids():
            self._signal_group(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.group_pids() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    # -- inspection ------------------------------------------------------------------------
    def group_pids(self) -> list[int]:
        """Live processes of the job's process group (its session leader's pid is the pgid)."""
        if self.proc is None:
            return []
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # After the comm field: state, ppid, pgrp. Zombies no longer count.
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def _java_status(self) -> tuple[int, dict[str, str]] | None:
        """Pid and /proc status fields of the job's JVM (the Spark driver)."""
        for pid in self.group_pids():
            fields = proc_status(pid)
            if fields and fields.get("Name", "").strip() == "java" and "VmRSS" in fields:
                return pid, fields
        return None

    def python_rss_kib(self) -> int | None:
        """Resident memory of the job's driver Python process (the group's leader)."""
        fields = proc_status(self.proc.pid) if self.proc is not None else None
        return int(fields["VmRSS"].split()[0]) if fields and "VmRSS" in fields else None

    def java_rss_kib(self) -> int | None:
        """Resident memory of the job's JVM."""
        java = self._java_status()
        return int(java[1]["VmRSS"].split()[0]) if java else None

    def java_live_heap_kib(self) -> int | None:
        """Objects alive in the JVM's heap, from jcmd's class histogram (which runs a full GC
        first). RSS alone cannot tell a leak from a heap the collector has not shrunk yet.
        None without the JDK's jcmd (a JRE has none)."""
        java, jcmd = self._java_status(), shutil.which("jcmd")
        if java is None or jcmd is None:
            return None
        try:
            out = subprocess.run([jcmd, str(java[0]), "GC.class_histogram"], capture_output=True,
                                 text=True, timeout=60).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            return None
        # The histogram ends with "Total <instances> <bytes>".
        return int(out[-1]) // 1024 if len(out) >= 3 and out[-3] == "Total" else None

    def group_memory_kib(self) -> dict[int, tuple[str, int, int]]:
        """Per live process of the group: name, VmRSS and VmHWM (peak RSS) in KiB."""
        found = {}
        for pid in self.group_pids():
            fields = proc_status(pid)
            if fields and "VmRSS" in fields:
                found[pid] = (fields["Name"].strip(), int(fields["VmRSS"].split()[0]),
                              int(fields.get("VmHWM", fields["VmRSS"]).split()[0]))
        return found

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    | {line}" for line in text[-lines:])


class MemorySampler:
    """Samples a job's process group every `period_s` in a thread: the peak of the summed
    RSS (what the driver side holds at once), and each process's own VmHWM, last seen."""

    def __init__(self, job: JobProcess, period_s: float = 0.2):
        self.job, self.period_s = job, period_s
        self.peak_sum_kib = 0
        self.at_peak_kib: dict[str, int] = {}  # each process's RSS in the peak's sample
        self.hwm_kib: dict[int, tuple[str, int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            procs = self.job.group_memory_kib()
            if procs:
                self.samples += 1
                total = sum(p[1] for p in procs.values())
                if total > self.peak_sum_kib:
                    self.peak_sum_kib = total
                    self.at_peak_kib = {}
                    for name, rss, _ in procs.values():
                        self.at_peak_kib[name] = self.at_peak_kib.get(name, 0) + rss
                for pid, (name, _rss, hwm) in procs.items():
                    self.hwm_kib[pid] = (name, hwm)
            self._stop.wait(self.period_s)

    def figures(self) -> dict:
        return {"driver_peak_rss_mib": round(self.peak_sum_kib / 1024, 1),
                "driver_sum_vmhwm_mib": round(sum(h for _, h in self.hwm_kib.values()) / 1024, 1),
                "driver_processes": sorted({n for n, _ in self.hwm_kib.values()}),
                "driver_peak_by_process_mib": {n: round(r / 1024, 1)
                                               for n, r in sorted(self.at_peak_kib.items())},
                "memory_samples": self.samples}


def ours_job(name: str, work: Path, source: Path, checkpoint: Path, port: int, db, ca_file: Path,
             once: bool, job_args: list[str], driver: str = "mariadb") -> JobProcess:
    """spark_streaming.py as its README says to run it, as the database's pipeline user,
    with `driver` (a key of DRIVERS) as its JDBC driver."""
    env = spark_env(MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(port), MYSQL_DATABASE=db.name,
                    MYSQL_USER=db.user, MYSQL_PASSWORD=db.password, MYSQL_SSL_MODE="VERIFY_CA",
                    MYSQL_SSL_CA=str(ca_file), **DRIVERS[driver])
    cmd = [PYTHON, str(ROOT / "spark_streaming.py"), "--source", str(source),
           "--checkpoint", str(checkpoint), *(["--once"] if once else []), *job_args]
    return JobProcess(name, cmd, env, work / f"{name}.log")


# The tuned plain design: what a user of stock Spark would set first for a backlog. The jar
# is MariaDB Connector/J 2.7.6, where `rewriteBatchedStatements` turns Spark's JDBC batches
# (1,000 rows) into multi-row INSERTs; `useBulkStmts` exists too but only acts on
# server-side prepared statements, which that option turns off (docs/benchmarks.md).
TUNED_FILES_PER_TRIGGER = 100
TUNED_URL_OPTIONS = "rewriteBatchedStatements=true"


def plain_job(name: str, work: Path, source: Path, checkpoint: Path, port: int, db,
              once: bool, tuned: bool = False) -> JobProcess:
    """bench/plain_job.py: the tutorial design, plain-text JDBC; default driver settings
    unless `tuned` (maxFilesPerTrigger 100 and batched inserts)."""
    env = spark_env(BENCH_DB_USER=db.user, BENCH_DB_PASSWORD=db.password)
    cmd = [PYTHON, str(ROOT / "bench" / "plain_job.py"), "--source", str(source),
           "--checkpoint", str(checkpoint), "--url", f"jdbc:mysql://127.0.0.1:{port}/{db.name}",
           "--jar", str(DRIVER_JAR), "--timings", str(work / f"{name}.timings.jsonl"),
           *(["--once"] if once else ["--processing-time", "0"])]
    if tuned:
        cmd += ["--max-files-per-trigger", str(TUNED_FILES_PER_TRIGGER),
                "--url-options", TUNED_URL_OPTIONS]
    return JobProcess(name, cmd, env, work / f"{name}.log")


SPARK_SUBMIT = str(Path(PYTHON).parent / "spark-submit")


def submitted_job(name: str, work: Path, source: Path, checkpoint: Path, port: int, db,
                  ca_file: Path, master: str, conf: dict[str, str],
                  job_args: list[str]) -> JobProcess:
    """spark_streaming.py under spark-submit --master `master` (a standalone cluster), --once.

    spark-submit's shell script, the driver JVM and the job's Python process share the
    process group, so sampling the group gives the driver side's whole memory."""
    env = spark_env(MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(port), MYSQL_DATABASE=db.name,
                    MYSQL_USER=db.user, MYSQL_PASSWORD=db.password, MYSQL_SSL_MODE="VERIFY_CA",
                    MYSQL_SSL_CA=str(ca_file), JDBC_DRIVER_JAR=str(DRIVER_JAR))
    env.pop("PYSPARK_SUBMIT_ARGS", None)  # spark-submit's own --conf says it all
    confs = [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]
    cmd = [SPARK_SUBMIT, "--master", master, *confs, str(ROOT / "spark_streaming.py"),
           "--source", str(source), "--checkpoint", str(checkpoint), "--once", *job_args]
    return JobProcess(name, cmd, env, work / f"{name}.log")
