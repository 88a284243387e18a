"""The contenders, each run on the same files and the same server.

- plain:       bench/plain_job.py, the tutorial's foreachBatch + write.jdbc(mode="append");
- tuned_plain: the same with maxFilesPerTrigger=100 and batched inserts in the driver;
- load_data:   LOAD DATA LOCAL INFILE per file with mysql-connector-python, a database-side
               reference for how fast rows can get in at all (no validation, no ledger);
- ours:        spark_streaming.py, checked for exactly-once after every run;
- ours_tasks:  the same with --driver-batch-max-bytes 0: every batch through Spark tasks;
- ours_mysqlj: ours with MySQL Connector/J instead of MariaDB's (the production driver).
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import mysql.connector

from bench.jobs import JobFailed
from bench.jobs import JobProcess
from bench.jobs import ours_job
from bench.jobs import plain_job
from bench.server import BenchServer
from bench.server import Database
from bench.workload import Expected

PLAIN, TUNED, LOAD_DATA, OURS = "plain", "tuned_plain", "load_data", "ours"
OURS_TASKS = "ours_tasks"
OURS_MYSQLJ = "ours_mysqlj"
# Which JDBC driver (a key of bench.jobs.DRIVERS) each contender of ours runs with.
OURS_DRIVER = {OURS: "mariadb", OURS_TASKS: "mariadb", OURS_MYSQLJ: "mysql"}
SPARK_TASKS_ARGS = ["--driver-batch-max-bytes", "0"]  # the job's "always Spark tasks" setting


class CorrectnessError(Exception):
    """Our job stored something other than exactly the valid events: the scenario fails."""


@dataclass
class Run:
    """One contender's figures in one scenario."""

    contender: str
    input_rows: int          # data rows in the input files (the same for every contender)
    rows_stored: int         # rows the contender put in its events table
    seconds: float           # wall time: process start -> exit (LOAD DATA: connect -> last commit)
    batches: int = 0         # micro-batches (LOAD DATA: statements, one per file)
    span_s: float | None = None  # first batch start -> last batch end: no JVM start or stop
    sink_s: list[float] = field(default_factory=list)  # per batch, inside foreachBatch
    check: str = "ok"
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float | None:
        return self.input_rows / self.seconds if self.seconds else None

    @property
    def s_per_batch(self) -> float | None:
        """Steady seconds per micro-batch: the batch span divided by the batches in it."""
        if not self.batches or self.span_s is None:
            return None
        return self.span_s / self.batches

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "sink_s"}
        d.update(rows_per_s=self.rows_per_s, s_per_batch=self.s_per_batch,
                 sink_s_per_batch=(sum(self.sink_s) / len(self.sink_s)) if self.sink_s else None)
        return d


class Meter:
    """Called right around the contender's own work, so that set-up and checks by the bench
    never count: start() just before, stop() just after, then annotate(run) adds what it
    measured to the run's figures. This one measures nothing."""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def annotate(self, run: Run) -> None:
        pass


# -- checks ------------------------------------------------------------------------------------

def compare_ids(server: BenchServer, db: Database, want: frozenset[str]) -> str:
    """'ok', or what differs between `events` and the ids a correct load must hold."""
    counts = Counter(r[0] for r in server.query("SELECT event_id FROM events", db.name))
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    missing = len(want - counts.keys())
    unexpected = len(counts.keys() - want)
    if duplicated or missing or unexpected:
        return f"{missing} missing, {unexpected} unexpected, {duplicated} duplicated event_ids"
    return "ok"


def check_ours(server: BenchServer, db: Database, want: frozenset[str], ledger: list[dict]) -> str:
    """Exactly once, or a loud failure: the bench never reports speed for a wrong result."""
    verdict = compare_ids(server, db, want)
    written = sum(b["rows_written"] for b in ledger)
    if verdict == "ok" and written != len(want):
        verdict = f"ledger says {written} rows written, events holds {len(want)}"
    if verdict != "ok":
        raise CorrectnessError(f"our job is NOT exactly-once in database {db.name}: {verdict}")
    return verdict


# -- ours --------------------------------------------------------------------------------------

def read_ledger(server: BenchServer, db: Database) -> list[dict]:
    """ingest_batches, oldest first, times as epoch seconds (both columns hold UTC)."""
    rows = server.query(
        "SELECT batch_id, file_count, rows_read, rows_written, rows_rejected, rows_duplicate,"
        " prepare_ms, write_ms, attempts,"
        " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', started_at) / 1e6,"
        " TIMESTAMPDIFF(MICROSECOND, '1970-01-01', committed_at) / 1e6"
        " FROM ingest_batches ORDER BY committed_at", db.name)
    keys = ("batch_id", "file_count", "rows_read", "rows_written", "rows_rejected",
            "rows_duplicate", "prepare_ms", "write_ms", "attempts", "started_at", "committed_at")
    return [{k: (float(v) if k.endswith("_at") else int(v)) for k, v in zip(keys, r)}
            for r in rows]


def ours_run(job: JobProcess, server: BenchServer, db: Database, exp: Expected,
             contender: str = OURS) -> Run:
    """Figures of a finished (or stopped) run of our job, from its ledger; checked."""
    ledger = read_ledger(server, db)
    check = check_ours(server, db, exp.valid_ids, ledger)
    run = Run(contender, exp.input_rows, len(exp.valid_ids), job.ended_at - job.started_at,
              batches=len(ledger), check=check)
    if ledger:
        run.span_s = ledger[-1]["committed_at"] - ledger[0]["started_at"]
        run.sink_s = [(b["prepare_ms"] + b["write_ms"]) / 1000 for b in ledger]
        run.extra.update(
            startup_s=round(ledger[0]["started_at"] - job.started_at, 2),
            prepare_ms=sum(b["prepare_ms"] for b in ledger),
            write_ms=sum(b["write_ms"] for b in ledger),
            files_per_batch=round(sum(b["file_count"] for b in ledger) / len(ledger), 2),
            attempts_max=max(b["attempts"] for b in ledger),
            # "Every row checked": each data row read, then written or quarantined.
            rows_read=sum(b["rows_read"] for b in ledger),
            rows_rejected=sum(b["rows_rejected"] for b in ledger),
        )
    client_db_ms = _client_db_ms(job.log_path)
    if client_db_ms is not None:
        run.extra["db_client_ms"] = client_db_ms
    run.extra["exit_code"] = job.proc.returncode if job.proc else None
    return run


# The job logs "... db N ms ..." per batch, measured by the driver around the commit, so it
# includes the network that the ledger's write_ms (measured on the server) leaves out. Only a
# log line: if its wording changes, the figure is simply missing.
_DB_MS = re.compile(r"INFO (?:\S+: )?batch \d+: .*\bdb (\d+) ms")


def _client_db_ms(log_path: Path) -> int | None:
    try:
        found = _DB_MS.findall(log_path.read_text(errors="replace"))
    except OSError:
        return None
    return sum(int(ms) for ms in found) if found else None


def run_to_exit(job: JobProcess, meter: Meter, timeout: float, label: str) -> None:
    """Start a --once job, wait for it (metered), always stop it; fail on a non-zero exit."""
    meter.start()
    try:
        rc = job.start().wait(timeout)
    finally:
        job.stop()
        meter.stop()
    if rc != 0:
        raise JobFailed(f"{label} exited with {rc}\n{job.log_tail()}")


def run_ours(server: BenchServer, work: Path, name: str, source: Path, exp: Expected,
             job_args: list[str], timeout: float, port: int | None = None,
             meter: Meter = Meter(), contender: str = OURS) -> Run:
    """One --once run of our job into a fresh database; fails on any exit code but 0."""
    db = server.create_ours(name)
    job = ours_job(name, work, source, work / f"{name}.checkpoint", port or server.port, db,
                   server.ca_file, once=True, job_args=job_args, driver=OURS_DRIVER[contender])
    run_to_exit(job, meter, timeout, f"{name}: our job")
    run = ours_run(job, server, db, exp, contender)
    meter.annotate(run)
    return run


# -- plain -------------------------------------------------------------------------------------

def read_timings(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plain_run(job: JobProcess, server: BenchServer, db: Database, exp: Expected,
              contender: str = PLAIN) -> Run:
    """Figures of the plain design from its per-batch timing lines; the check is recorded,
    not enforced (the design promises nothing after a crash, but a clean run must match)."""
    timings = read_timings(job.log_path.with_suffix(".timings.jsonl"))
    stored = int(server.query("SELECT COUNT(*) FROM events", db.name)[0][0])
    run = Run(contender, exp.input_rows, stored, job.ended_at - job.started_at,
              batches=len(timings), check=compare_ids(server, db, exp.valid_ids))
    if timings:
        run.span_s = timings[-1]["end"] - timings[0]["start"]
        run.sink_s = [t["end"] - t["start"] for t in timings]
        run.extra["startup_s"] = round(timings[0]["start"] - job.started_at, 2)
    run.extra["exit_code"] = job.proc.returncode if job.proc else None
    return run


def run_plain(server: BenchServer, work: Path, name: str, source: Path, exp: Expected,
              timeout: float, port: int | None = None, meter: Meter = Meter(),
              tuned: bool = False) -> Run:
    db = server.create_plain(name)
    job = plain_job(name, work, source, work / f"{name}.checkpoint", port or server.port, db,
                    once=True, tuned=tuned)
    inserts_before = server.global_status().get("Com_insert", 0)
    run_to_exit(job, meter, timeout, f"{name}: the plain job")
    inserts = server.global_status().get("Com_insert", 0) - inserts_before
    run = plain_run(job, server, db, exp, TUNED if tuned else PLAIN)
    run.extra["insert_statements"] = inserts
    if tuned:
        run.check = check_batched(inserts, run.rows_stored, run.check)
    meter.annotate(run)
    return run


def check_batched(insert_statements: int, rows: int, check: str) -> str:
    """The driver ignores options it does not know, silently: count the INSERTs the server
    saw. Batched, Spark's 1,000-row JDBC batches become one statement each; not batched,
    every row is a statement of its own."""
    if rows >= 100 and insert_statements > rows / 10:
        problem = (f"batched inserts NOT in effect: {insert_statements} INSERT statements for"
                   f" {rows} rows")
        return problem if check == "ok" else f"{check}; {problem}"
    return check


def run_empty(server: BenchServer, work: Path, name: str, contender: str,
              job_args: list[str], timeout: float) -> float:
    """Wall seconds of a --once run over an empty folder: the tool's fixed cost (JVM and
    session start, query start and stop), subtracted from its backlog run."""
    source = work / f"{name}.empty"
    source.mkdir(parents=True, exist_ok=True)
    checkpoint = work / f"{name}.checkpoint"
    if contender in (PLAIN, TUNED):
        db = server.create_plain(name)
        job = plain_job(name, work, source, checkpoint, server.port, db, once=True,
                        tuned=contender == TUNED)
    else:
        db = server.create_ours(name)
        job = ours_job(name, work, source, checkpoint, server.port, db, server.ca_file,
                       once=True, job_args=job_args, driver=OURS_DRIVER[contender])
    run_to_exit(job, Meter(), timeout, f"{name}: the empty-folder run")
    return job.ended_at - job.started_at


# -- LOAD DATA ---------------------------------------------------------------------------------

# Sent without parameters: the connector's %s substitution would trip over the '%s' of the
# date format. The path is the bench's own temp file, quoted by _sql_string all the same.
LOAD_SQL = """LOAD DATA LOCAL INFILE {path} INTO TABLE events CHARACTER SET utf8mb4
FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' LINES TERMINATED BY '\\n' IGNORE 1 LINES
(event_id, @user_id, product_id, event_type, price, @event_time)
SET user_id = NULLIF(@user_id, ''),
    event_time = STR_TO_DATE(@event_time, '%Y-%m-%dT%H:%i:%s.%fZ')"""


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def run_load_data(server: BenchServer, name: str, exp: Expected, port: int | None = None,
                  meter: Meter = Meter()) -> Run:
    """Every file with one LOAD DATA LOCAL INFILE and a COMMIT, over TLS (VERIFY_CA) like
    our job. All rows are kept (an empty user becomes NULL): the simplest honest load."""
    db = server.create_plain(name, nullable_user=True)
    folder = exp.files[0].parent if exp.files else None
    meter.start()
    started = time.time()
    conn = mysql.connector.connect(
        host="127.0.0.1", port=port or server.port, user=db.user, password=db.password,
        database=db.name, ssl_ca=str(server.ca_file), ssl_verify_cert=True,
        # Only files under the scenario's folder may be sent, whatever the server asks for.
        allow_local_infile_in_path=str(folder), autocommit=False, connection_timeout=10)
    try:
        cur = conn.cursor()
        for path in exp.files:
            cur.execute(LOAD_SQL.format(path=_sql_string(str(path))))
            conn.commit()
    finally:
        conn.close()
    seconds = time.time() - started
    meter.stop()
    run = Run(LOAD_DATA, exp.input_rows, 0, seconds, batches=len(exp.files), span_s=seconds)
    meter.annotate(run)
    run.rows_stored = int(server.query("SELECT COUNT(*) FROM events", db.name)[0][0])
    if run.rows_stored != exp.input_rows:
        run.check = f"{run.rows_stored} rows loaded, the files hold {exp.input_rows}"
    return run
