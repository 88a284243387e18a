"""The pipeline's state as `status` prints it and the status page shows it: health and why,
totals, latency, backlog, rejects by reason, recent batches, read with a handful of queries.
A file waits when `ingest_files` does not hold it, whatever its modification time."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

from pipeline.contract import HEARTBEAT_FILE
from pipeline.contract import SOURCE_GLOB
from pipeline.contract import is_utf8_name
from pipeline.contract import ledger_key
from pipeline.contract import ledger_name
from pipeline.contract import printable_name
from pipeline.read.local import decode_uri

RECENT_BATCHES = 200
KEYS_PER_QUERY = 1000  # file keys asked about per query
EXAMPLES_PER_REASON = 3


@dataclass
class Status:
    """A snapshot of the pipeline, as printed or returned with --json."""

    healthy: bool
    problems: list[str]
    job_alive: bool | None
    job_pid: int | None
    last_commit_at: str | None
    seconds_since_last_commit: float | None
    batches_total: int
    events_total: int
    rows_read_total: int
    rows_rejected_total: int
    rows_duplicate_total: int
    throughput_rows_per_s: float | None
    latency_p50_s: float | None
    latency_p99_s: float | None
    backlog_files: int
    oldest_waiting_file_age_s: float | None
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    recent_batches: list[dict] = field(default_factory=list)
    checkpoint_generation: int | None = None
    checkpoint_folder: str | None = None
    checkpoint_files: int | None = None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of a list; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def read_heartbeat(checkpoint: Path) -> tuple[bool | None, int | None, str | None]:
    """(alive, pid, problem) from the job's heartbeat file: alive is None when there is
    none, or when it is damaged (then `problem` says so)."""
    path = checkpoint / HEARTBEAT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, None, None
    except (OSError, UnicodeDecodeError) as e:
        return None, None, f"heartbeat file {path} cannot be read ({e})"
    try:
        beat = json.loads(text)
        age = datetime.now(UTC).timestamp() - float(beat["updated_at"])
        pid = int(beat["pid"])
        if pid <= 0:
            raise ValueError(f"pid {pid}")
    except (ValueError, TypeError, KeyError, IndexError) as e:
        return None, None, (f"heartbeat file {path} is damaged ({type(e).__name__}: {e}):"
                            " cannot tell whether the job runs; a running job rewrites it"
                            " every 5 s")
    try:
        os.kill(pid, 0)
        running = True
    except ProcessLookupError:
        running = False
    except PermissionError:
        running = True
    return running and age < 30, pid, None


def waiting_files(cursor, source: Path) -> dict[str, float]:
    """name -> modification time of the entries named like a source file that
    `ingest_files` does not hold (links not followed: the job quarantines what is not a
    regular file, so a link, directory or FIFO waits until it does)."""
    if not source.is_dir():
        return {}
    entries = {}
    for path in source.glob(SOURCE_GLOB):
        if not is_utf8_name(path.name):
            continue  # Spark never lists it; the job records it as bad_file_name
        try:
            entries[ledger_name(path)] = path.lstat().st_mtime
        except FileNotFoundError:
            pass  # archived or deleted while we looked
    keys = {ledger_key(name): name for name in entries}
    listed = list(keys)
    for start in range(0, len(listed), KEYS_PER_QUERY):
        chunk = listed[start:start + KEYS_PER_QUERY]
        cursor.execute("SELECT file_key FROM ingest_files WHERE file_key IN ("
                       + ", ".join(["%s"] * len(chunk)) + ")", chunk)
        for (key,) in cursor.fetchall():
            entries.pop(keys[str(key)], None)
    return entries


def read_but_not_loaded(folder: Path | None, waiting: dict[str, float]) -> list[str]:
    """Waiting files the checkpoint lists in a batch Spark has committed: Spark never
    lists a file again, so no run on this checkpoint will take them."""
    if folder is None or not waiting:
        return []
    try:
        committed = [int(n) for n in os.listdir(folder / "commits") if n.isdigit()]
        names = os.listdir(folder / "sources" / "0")
    except OSError:
        return []
    last_committed = max(committed, default=-1)
    compacts = [int(n.split(".")[0]) for n in names if n.endswith(".compact")]
    latest = max(compacts, default=-1)
    logs = [f"{latest}.compact"] if latest >= 0 else []
    logs += [n for n in names if n.isdigit() and int(n) > latest]
    lost = []
    for name in logs:
        try:
            lines = (folder / "sources" / "0" / name).read_text("utf-8").splitlines()[1:]
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                entry = json.loads(line)
                path, batch_id = decode_uri(entry["path"])[0], int(entry["batchId"])
            except (ValueError, TypeError, KeyError):
                continue
            if path in waiting and batch_id <= last_committed:
                lost.append(path)
    return sorted(set(lost))


def collect_status(cursor, source: Path | None, checkpoint: Path | None,
                   stale_after_s: float,
                   checkpoint_facts: tuple[int | None, str | None, int | None] = (None,) * 3
                   ) -> Status:
    """Gather every figure with a handful of queries. `source`, `checkpoint`: local folders,
    or None when remote (s3a://, hdfs://: no backlog, no heartbeat); `checkpoint_facts` are
    the caller's (generation, its folder, files in its log), which only the job's side can
    read."""
    now = datetime.now(UTC).replace(tzinfo=None)
    cursor.execute(
        "SELECT batch_id, file_count, rows_read, rows_written, rows_rejected, rows_duplicate,"
        " TIMESTAMPDIFF(MICROSECOND, newest_file_at, committed_at) / 1e6, committed_at,"
        " prepare_ms, attempts FROM ingest_batches ORDER BY committed_at DESC LIMIT %s",
        (RECENT_BATCHES,))
    recent = [dict(zip(("batch_id", "files", "rows_read", "rows_written", "rows_rejected",
                        "rows_duplicate", "latency_s", "committed_at", "prepare_ms",
                        "attempts"), row)) for row in cursor.fetchall()]
    cursor.execute("SELECT count(*), coalesce(sum(rows_read), 0), coalesce(sum(rows_rejected),"
                   " 0), coalesce(sum(rows_duplicate), 0) FROM ingest_batches")
    batches_total, read_total, rejected_total, duplicate_total = cursor.fetchone()
    cursor.execute("SELECT count(*) FROM events")
    events_total = cursor.fetchone()[0]
    cursor.execute("SELECT reason, count(*) FROM events_rejected GROUP BY reason"
                   " ORDER BY count(*) DESC")
    by_reason = {reason: int(n) for reason, n in cursor.fetchall()}

    latencies = [float(b["latency_s"]) for b in recent if b["latency_s"] is not None]
    last_commit = recent[0]["committed_at"] if recent else None
    since_commit = (now - last_commit).total_seconds() if last_commit else None
    throughput = None
    if len(recent) >= 2:
        span = (recent[0]["committed_at"] - recent[-1]["committed_at"]).total_seconds()
        if span > 0:
            throughput = sum(int(b["rows_read"]) for b in recent[:-1]) / span
    generation, folder, logged = checkpoint_facts
    waiting = waiting_files(cursor, source) if source is not None else {}
    now_s = time.time()
    ages = [now_s - mtime for mtime in waiting.values()]
    oldest_age = max(0.0, max(ages)) if ages else None  # a file dated in the future: 0
    alive, pid, heartbeat_problem = (read_heartbeat(checkpoint) if checkpoint is not None
                                     else (None, None, None))

    problems = []
    if source is not None and not source.is_dir():
        problems.append(f"source folder {source} does not exist (or is not a folder): check"
                        " --source; no file there can be counted")
    if checkpoint is not None and not checkpoint.is_dir():
        problems.append(f"checkpoint folder {checkpoint} does not exist: check --checkpoint;"
                        " the job never ran with it")
    # A file dated in the future has no age to go by: only the commits tell.
    stale_file = any(age > stale_after_s or age < 0 for age in ages)
    if waiting and (since_commit is None or since_commit > stale_after_s) and stale_file:
        problems.append(f"{len(waiting)} file(s) waiting and no commit for over"
                        f" {stale_after_s:g}s")
    if heartbeat_problem:
        problems.append(heartbeat_problem)
    if waiting and alive is False:
        problems.append("the streaming job is not running")
    elif waiting and alive is None and checkpoint is not None and checkpoint.is_dir() \
            and not heartbeat_problem:
        problems.append(f"the streaming job is not running: no heartbeat in {checkpoint}"
                        " (or it runs with another --checkpoint)")
    lost = read_but_not_loaded(None if folder is None else Path(folder), waiting)
    if lost:
        problems.append(f"{len(lost)} file(s) waiting that the checkpoint lists as read"
                        f" (first: {lost[0]}): no run on this checkpoint takes them; see"
                        " docs/operations.md, 'Files that wait for ever'")
    for b in recent:
        b["committed_at"] = b["committed_at"].isoformat(sep=" ", timespec="seconds")
        b["latency_s"] = None if b["latency_s"] is None else round(float(b["latency_s"]), 3)
        for key in ("rows_read", "rows_written", "rows_rejected", "rows_duplicate"):
            b[key] = int(b[key])
    return Status(
        healthy=not problems, problems=problems, job_alive=alive, job_pid=pid,
        last_commit_at=recent[0]["committed_at"] if recent else None,
        seconds_since_last_commit=None if since_commit is None else round(since_commit, 1),
        batches_total=int(batches_total), events_total=int(events_total),
        rows_read_total=int(read_total), rows_rejected_total=int(rejected_total),
        rows_duplicate_total=int(duplicate_total),
        throughput_rows_per_s=None if throughput is None else round(throughput, 2),
        latency_p50_s=percentile(latencies, 50), latency_p99_s=percentile(latencies, 99),
        backlog_files=len(waiting),
        oldest_waiting_file_age_s=None if oldest_age is None else round(oldest_age, 1),
        rejected_by_reason=by_reason, recent_batches=recent,
        checkpoint_generation=generation, checkpoint_folder=folder, checkpoint_files=logged,
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def render(status: Status, recent: int = 10) -> str:
    """A terminal report."""
    alive = {True: f"running (pid {status.job_pid})", False: "NOT running",
             None: "unknown (no heartbeat)"}[status.job_alive]
    health = "healthy" if status.healthy else "UNHEALTHY: " + "; ".join(status.problems)
    throughput = status.throughput_rows_per_s
    lines = [
        f"pipeline      {health}",
        f"job           {alive}",
        f"last commit   {status.last_commit_at or 'never'}"
        + (f" ({status.seconds_since_last_commit:.0f}s ago)"
           if status.seconds_since_last_commit is not None else ""),
        f"backlog       {status.backlog_files} file(s) waiting"
        + (f", oldest {status.oldest_waiting_file_age_s:.0f}s"
           if status.oldest_waiting_file_age_s is not None else ""),
        f"totals        {status.events_total} events from {status.rows_read_total} rows read"
        f" in {status.batches_total} batches; {status.rows_rejected_total} rejected,"
        f" {status.rows_duplicate_total} duplicate",
        f"throughput    {throughput if throughput is not None else '-'} rows/s"
        f"   latency p50 {_seconds(status.latency_p50_s)}  p99 {_seconds(status.latency_p99_s)}",
    ]
    if status.checkpoint_generation is not None:
        lines.append(f"checkpoint    generation {status.checkpoint_generation}"
                     f" ({printable_name(status.checkpoint_folder)}),"
                     f" {status.checkpoint_files} file(s) in"
                     " its log")
    if status.rejected_by_reason:
        lines.append("rejected      " + ", ".join(f"{r} {n}" for r, n in
                                                  status.rejected_by_reason.items()))
    if status.recent_batches:
        lines.append("")
        lines.append(f"{'batch':>7} {'files':>5} {'read':>7} {'written':>7} {'rejected':>8}"
                     f" {'dup':>5} {'latency':>8}  committed (UTC)")
        for b in status.recent_batches[:recent]:
            lines.append(f"{b['batch_id']:>7} {b['files']:>5} {b['rows_read']:>7}"
                         f" {b['rows_written']:>7} {b['rows_rejected']:>8}"
                         f" {b['rows_duplicate']:>5} {_seconds(b['latency_s']):>8}  "
                         f"{b['committed_at']}")
    return "\n".join(lines)


def render_brief(status: Status) -> str:
    """One line, for the demo's terminal."""
    return (f"[status] {status.events_total} events, {status.rows_rejected_total} rejected,"
            f" {status.batches_total} batches; last commit {status.last_commit_at or 'never'};"
            f" latency p50 {_seconds(status.latency_p50_s)}; backlog {status.backlog_files}"
            f"{'' if status.healthy else ' - UNHEALTHY: ' + '; '.join(status.problems)}")




def reject_examples(cursor, per_reason: int = EXAMPLES_PER_REASON) -> dict[str, list[tuple]]:
    """The newest few rejected rows of each reason: (file, line, detail, raw line)."""
    cursor.execute("SELECT DISTINCT reason FROM events_rejected")
    examples = {}
    for (reason,) in cursor.fetchall():
        cursor.execute("SELECT source_file, line_number, detail, raw_line FROM events_rejected"
                       " WHERE reason = %s ORDER BY rejected_at DESC, id DESC LIMIT %s",
                       (reason, per_reason))
        examples[reason] = [(printable_name(name), line, detail, raw)
                            for name, line, detail, raw in cursor.fetchall()]
    return examples
