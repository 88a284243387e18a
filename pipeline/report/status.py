"""The pipeline's state as `status` prints it and the status page shows it: health and why,
totals, latency, backlog, rejects by reason, recent batches, read with a handful of queries."""

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
from pipeline.contract import printable_name
from pipeline.contract import recorded_name

RECENT_BATCHES = 200
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


def read_heartbeat(checkpoint: Path) -> tuple[bool | None, int | None]:
    """(alive, pid) from the job's heartbeat file; alive is None when there is none."""
    try:
        beat = json.loads((checkpoint / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        return None, None
    age = datetime.now(UTC).timestamp() - float(beat["updated_at"])
    pid = int(beat["pid"])
    try:
        os.kill(pid, 0)
        running = True
    except ProcessLookupError:
        running = False
    except PermissionError:
        running = True
    return running and age < 30, pid


def waiting_files(source: Path, loaded: set[str]) -> list[Path]:
    """Files in the source folder that no committed batch has loaded yet."""
    if not source.is_dir():
        return []
    folder = source.resolve()
    # recorded_name: a name that is not UTF-8 is recorded escaped (quarantined, bad_file_name).
    return [p for p in source.glob("events_*.csv")
            if recorded_name(f"file:{folder / p.name}") not in loaded]


def collect_status(cursor, source: Path, checkpoint: Path, stale_after_s: float,
                   checkpoint_facts: tuple[int | None, str | None, int | None] = (None,) * 3
                   ) -> Status:
    """Gather every figure with a handful of queries; `checkpoint_facts` are the caller's
    (generation, its folder, files in its log), which only the job's side can read."""
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
    cursor.execute("SELECT source_file FROM ingest_files")
    loaded = {row[0] for row in cursor.fetchall()}

    latencies = [float(b["latency_s"]) for b in recent if b["latency_s"] is not None]
    last_commit = recent[0]["committed_at"] if recent else None
    since_commit = (now - last_commit).total_seconds() if last_commit else None
    throughput = None
    if len(recent) >= 2:
        span = (recent[0]["committed_at"] - recent[-1]["committed_at"]).total_seconds()
        if span > 0:
            throughput = sum(int(b["rows_read"]) for b in recent[:-1]) / span
    generation, folder, logged = checkpoint_facts
    waiting = waiting_files(source, loaded)
    oldest_age = time.time() - min(p.stat().st_mtime for p in waiting) if waiting else None
    alive, pid = read_heartbeat(checkpoint)

    problems = []
    if waiting and (since_commit is None or since_commit > stale_after_s) \
            and (oldest_age or 0) > stale_after_s:
        problems.append(f"{len(waiting)} file(s) waiting and no commit for over"
                        f" {stale_after_s:g}s")
    if waiting and alive is False:
        problems.append("the streaming job is not running")
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
