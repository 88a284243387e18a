"""The job's own figures for Prometheus (--metrics-port): what an operator alerts on.

Spark's metrics (--prometheus) say how Spark is doing; these say how the pipeline is:
rows written and rejected (by reason), batch durations, the backlog and the time of the
last commit, the database's retries; /healthz answers 503 while files wait and nothing
commits. Counters count what this process committed since it
started (Prometheus handles the reset at a restart); each is the sum of the same figures in
the ledger rows this process wrote, so they can be checked against the tables.
"""

from __future__ import annotations

import ipaddress
import logging
import platform
import threading
import time
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pyspark
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import PlatformCollector
from prometheus_client import ProcessCollector
from prometheus_client import disable_created_metrics
from prometheus_client import generate_latest

from pipeline import __version__
from pipeline.contract import FILE_LOADED
from pipeline.contract import FILE_MISSING
from pipeline.contract import FILE_QUARANTINED
from pipeline.contract import FILE_REASONS
from pipeline.contract import REJECT_REASONS
from pipeline.contract import BatchPayload
from pipeline.contract import BatchResult
from pipeline.contract import FilePayload
from pipeline.errors import JobError

log = logging.getLogger(__name__)

# Every series of ours starts with this, as Prometheus' naming guide asks of an application.
PREFIX = "events_pipeline_"
# Batches take tens of milliseconds when small, minutes for a million-row file.
DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))
# /healthz says 503 when files wait and nothing was committed for this long (as `status`).
STALE_AFTER_S = 600.0

# A `_created` twin per counter doubles the series and breaks sums over a name's series.
disable_created_metrics()


class JobMetrics:
    """The job's metrics in their own registry: ours, the process's and the platform's."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S):
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self._stale_after_s = stale_after_s

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        gauge("build_info", "Always 1: the versions of this job", ("version", "spark", "python")
              ).labels(__version__, pyspark.__version__, platform.python_version()).set(1)
        self.batches = counter("batches", "Micro-batches committed (replays not counted)")
        self.files = counter("files", "Files committed, by status (loaded, missing,"
                             " quarantined)", ("status",))
        self.files_skipped = counter("files_skipped", "Files skipped: loaded before, under an"
                                     " earlier checkpoint")
        self.rows_read = counter("rows_read", "Data rows read (events and rejects)")
        self.rows_written = counter("rows_written", "Events inserted into the events table")
        self.rows_duplicate = counter("rows_duplicate", "Valid events not inserted: their"
                                      " event_id was already there")
        self.rows_rejected = counter("rows_rejected", "Rows put in events_rejected, by reason"
                                     " (a quarantined file counts once)", ("reason",))
        self.db_retries = counter("db_retries", "Database attempts that failed and were tried"
                                  " again")
        self.batch_duration = Histogram(
            PREFIX + "batch_duration_seconds", "From a micro-batch reaching the job to its"
            " commit", buckets=DURATION_BUCKETS, registry=registry)
        self.file_latency = Histogram(
            PREFIX + "file_latency_seconds", "From the newest file of a batch being written to"
            " its rows being committed", buckets=DURATION_BUCKETS, registry=registry)
        self.last_commit = gauge("last_commit_timestamp_seconds", "Unix time of the last"
                                 " commit; the job's start until its first")
        self.backlog_files = gauge("backlog_files", "Files waiting in the source folder, newer"
                                   " than the newest file loaded")
        self.backlog_oldest_age = gauge("backlog_oldest_file_age_seconds", "Age of the oldest"
                                        " file waiting (0: none)")
        self.checkpoint_generation = gauge("checkpoint_generation", "The current checkpoint"
                                           " generation")
        self.checkpoint_files = gauge("checkpoint_files", "Files in the current checkpoint's"
                                      " file-source log")
        # Every known label value exists from the start, so a rate over it is never blind.
        for status in (FILE_LOADED, FILE_MISSING, FILE_QUARANTINED):
            self.files.labels(status)
        for reason in REJECT_REASONS + FILE_REASONS:
            self.rows_rejected.labels(reason)
        self._last_commit_at = time.time()
        self.last_commit.set(self._last_commit_at)
        self._waiting = 0

    def set_backlog(self, waiting: int, oldest_age_s: float) -> None:
        """The files waiting in the source folder and the age of the oldest of them."""
        self._waiting = waiting
        self.backlog_files.set(waiting)
        self.backlog_oldest_age.set(oldest_age_s)

    def health(self) -> tuple[bool, str]:
        """(healthy, why): unhealthy while files wait and nothing was committed for long."""
        waiting = self._waiting
        since = time.time() - self._last_commit_at
        if waiting and since > self._stale_after_s:
            return False, (f"{waiting} file(s) waiting and no commit for {since:.0f}s"
                           f" (over {self._stale_after_s:g}s)")
        return True, f"ok: {waiting} file(s) waiting, last commit {since:.0f}s ago"

    def record_batch(self, batch: BatchPayload, result: BatchResult) -> None:
        """Add a committed batch (or one found committed before: only its retries)."""
        self.db_retries.inc(max(0, result.attempts - 1))
        if result.replayed:
            return
        self.batches.inc()
        self.files_skipped.inc(result.files_skipped)
        self.rows_written.inc(result.rows_written)
        self.rows_duplicate.inc(result.rows_duplicate)
        self.record_files([f for f in batch.files if f.key not in result.skipped_keys])
        now = time.time()
        self.batch_duration.observe(max(0.0, now - batch.started_at.timestamp()))
        newest = max((f.modified_at for f in batch.files if f.modified_at), default=None)
        if newest is not None:
            self.file_latency.observe(max(0.0, (datetime.now(UTC) - newest).total_seconds()))

    def record_files(self, files: list[FilePayload]) -> None:
        """Add committed files (a batch's, or an entry quarantined outside any batch)."""
        for f in files:
            self.files.labels(f.status).inc()
            self.rows_read.inc(f.rows_valid + f.rows_rejected)
            for reason, rows in f.rejected_by_reason.items():
                self.rows_rejected.labels(reason).inc(rows)
        self._last_commit_at = time.time()
        self.last_commit.set(self._last_commit_at)

    def serve(self, host: str, port: int, page: Callable[[], tuple[int, str]] | None = None
              ) -> None:
        """Serve /metrics, /healthz and the status `page` at / on host:port from a daemon
        thread."""
        try:
            server = ThreadingHTTPServer((host, port), _handler_for(self, page))
        except OSError as e:
            raise JobError(f"cannot serve metrics on {host}:{port}: {e.strerror}; choose"
                           " another --metrics-port") from None
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz, status page on /",
                 host, port)
        if not is_loopback(host):
            log.warning("the metrics endpoint listens on %s: reachable beyond this machine",
                        host)


def _handler_for(metrics: JobMetrics, page: Callable[[], tuple[int, str]] | None
                 ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
            elif path == "/healthz":
                healthy, why = metrics.health()
                self._reply(200 if healthy else 503, "text/plain; charset=utf-8",
                            (why + "\n").encode())
            elif path == "/" and page is not None:
                code, html = page()
                self._reply(code, "text/html; charset=utf-8", html.encode())
            else:
                self._reply(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args) -> None:  # noqa: A002 - http.server's name
            pass  # a scrape every few seconds is not news

    return Handler


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
