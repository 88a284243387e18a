"""The job's own figures for Prometheus (--metrics-port): what an operator alerts on.

Spark's metrics (--prometheus) say how Spark is doing; these say how the pipeline is:
rows written and rejected (by reason), batch durations, the backlog and the time since the
last commit, the database's retries. Counters count what this process committed since it
started (Prometheus handles the reset at a restart); each is the sum of the same figures in
the ledger rows this process wrote, so they can be checked against the tables.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from datetime import UTC
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import start_http_server

from pipeline.contract import BatchPayload
from pipeline.contract import BatchResult
from pipeline.contract import FilePayload
from pipeline.errors import JobError

log = logging.getLogger(__name__)

# Batches take tens of milliseconds when small, minutes for a million-row file.
DURATION_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, float("inf"))


class JobMetrics:
    """The job's metrics in their own registry (no process-wide defaults mixed in)."""

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        self.batches = Counter("pipeline_batches", "Micro-batches committed (replays not"
                               " counted)", registry=registry)
        self.files = Counter("pipeline_files", "Files committed, by status (loaded, missing,"
                             " quarantined)", ["status"], registry=registry)
        self.files_skipped = Counter("pipeline_files_skipped", "Files skipped: loaded before,"
                                     " under an earlier checkpoint", registry=registry)
        self.rows_read = Counter("pipeline_rows_read", "Data rows read (events and rejects)",
                                 registry=registry)
        self.rows_written = Counter("pipeline_rows_written", "Events inserted into the events"
                                    " table", registry=registry)
        self.rows_duplicate = Counter("pipeline_rows_duplicate", "Valid events not inserted:"
                                      " their event_id was already there", registry=registry)
        self.rows_rejected = Counter("pipeline_rows_rejected", "Rows put in events_rejected,"
                                     " by reason (a quarantined file counts once)", ["reason"],
                                     registry=registry)
        self.db_retries = Counter("pipeline_db_retries", "Database attempts that failed and"
                                  " were tried again", registry=registry)
        self.batch_duration = Histogram(
            "pipeline_batch_duration_seconds", "From a micro-batch reaching the job to its"
            " commit", buckets=DURATION_BUCKETS, registry=registry)
        self.file_latency = Histogram(
            "pipeline_file_latency_seconds", "From the newest file of a batch being written to"
            " its rows being committed", buckets=DURATION_BUCKETS, registry=registry)
        self.last_commit = Gauge("pipeline_last_commit_timestamp_seconds", "Unix time of the"
                                 " last commit (0: none yet)", registry=registry)
        self.since_last_commit = Gauge(
            "pipeline_seconds_since_last_commit", "Seconds since the last commit, or since"
            " the job started when none yet", registry=registry)
        self.backlog_files = Gauge("pipeline_backlog_files", "Files waiting in the source"
                                   " folder, newer than the newest file loaded",
                                   registry=registry)
        self.backlog_oldest_age = Gauge(
            "pipeline_backlog_oldest_file_age_seconds", "Age of the oldest file waiting (0:"
            " none)", registry=registry)
        self.checkpoint_generation = Gauge("pipeline_checkpoint_generation", "The current"
                                           " checkpoint generation", registry=registry)
        self.checkpoint_files = Gauge("pipeline_checkpoint_files", "Files in the current"
                                      " checkpoint's file-source log", registry=registry)
        self._last_commit_at = time.time()  # the start, until the first commit
        self.since_last_commit.set_function(lambda: time.time() - self._last_commit_at)

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

    def serve(self, host: str, port: int) -> None:
        """Serve /metrics on host:port from a daemon thread."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise JobError(f"cannot serve metrics on {host}:{port}: {e.strerror}; choose"
                           " another --metrics-port") from None
        log.info("metrics on http://%s:%d/metrics", host, port)
        if not is_loopback(host):
            log.warning("the metrics endpoint listens on %s: reachable beyond this machine",
                        host)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
