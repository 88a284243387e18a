"""The job's own metrics (--metrics-port), scraped while it runs and compared with the tables
the same batches wrote."""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipeline import __version__
from pipeline.contract import FILE_REASONS
from pipeline.contract import REJECT_REASONS
from pipeline.job.metrics import JobMetrics
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import start_job

# Unpacked by `scripts/setup.sh --for-tests` (scripts/test.sh) beside the venv's Python.
PROMTOOL = Path(PYTHON).parent / "promtool"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8")


def promtool_check_metrics(port: int) -> str:
    """What `promtool check metrics` finds wrong with the page (empty: nothing)."""
    page = get(port, "/metrics")[1]
    result = subprocess.run([str(PROMTOOL), "check", "metrics"], input=page, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return (result.stdout + result.stderr).strip()


def test_the_alert_rules_are_valid_and_fire_when_they_should():
    for args in (("check", "rules", "config/alerts.yml"),
                 ("test", "rules", "tests/prometheus/alerts_test.yml")):
        result = subprocess.run([str(PROMTOOL), *args], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


def test_healthz_says_503_while_files_wait_and_nothing_commits():
    metrics = JobMetrics(stale_after_s=0)
    port = free_port()
    metrics.serve("127.0.0.1", port)
    assert get(port, "/healthz") == (200, "ok: 0 file(s) waiting, last commit 0s ago\n")
    metrics.set_backlog(3, 42.0)
    time.sleep(0.01)
    code, text = get(port, "/healthz")
    assert code == 503 and text.startswith("3 file(s) waiting and no commit for")
    assert get(port, "/nowhere")[0] == 404
    assert promtool_check_metrics(port) == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, read with Prometheus' own text parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def by_label(samples: dict, name: str, label: str) -> dict[str, int]:
    return {dict(labels)[label]: int(value) for (sample, labels), value in samples.items()
            if sample == name and value}


def test_the_metrics_agree_with_the_tables(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "6", "--seed", "23", "--null-user-rate", "0.2")
    first = sorted(source.glob("events_*.csv"))[0]
    header, row = first.read_text().splitlines()[:2]
    # A repeated event (a duplicate), rows of other reasons, and a directory the job refuses.
    (source / "events_zz_more.csv").write_bytes(
        f"{header}\n{row}\n".encode() + b"x1,u1,p1,view,not-a-price,2026-01-01T00:00:00Z\n"
        b"\xff\xfe,u1,p1,view,1.00,2026-01-01T00:00:00Z\n")
    (source / "events_zz_dir.csv").mkdir()
    port = free_port()
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(tmp_path / "ck"), "--metrics-port", str(port),
                    log_path=tmp_path / "job.log")
    try:
        deadline = time.monotonic() + 240
        samples = {}
        while True:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (samples, (tmp_path / "job.log").read_text())
            loaded = database.query("SELECT count(*) FROM ingest_files")[0][0]
            if loaded == 8:
                samples = scrape(port)
                # The gauges follow every few seconds; counters at each commit.
                if samples.get(("events_pipeline_backlog_files", ())) == 0 and \
                        samples[("events_pipeline_batches_total", ())] == \
                        database.query("SELECT count(*) FROM ingest_batches")[0][0]:
                    break
            time.sleep(0.5)

        def one(sql: str) -> int:
            return int(database.query(sql)[0][0] or 0)

        assert samples[("events_pipeline_rows_written_total", ())] == one(
            "SELECT count(*) FROM events")
        assert samples[("events_pipeline_rows_duplicate_total", ())] == one(
            "SELECT sum(rows_duplicate) FROM ingest_files") == 1
        assert samples[("events_pipeline_rows_read_total", ())] == one(
            "SELECT sum(rows_read) FROM ingest_files")
        rejected = dict(database.query("SELECT reason, count(*) FROM events_rejected"
                                       " GROUP BY reason"))
        assert by_label(samples, "events_pipeline_rows_rejected_total", "reason") == rejected
        assert {"missing_user_id", "bad_price", "invalid_utf8",
                "not_a_regular_file"} <= rejected.keys()
        files = dict(database.query("SELECT status, count(*) FROM ingest_files GROUP BY status"))
        assert by_label(samples, "events_pipeline_files_total", "status") == files
        assert files == {"loaded": 7, "quarantined": 1}
        durations = samples[("events_pipeline_batch_duration_seconds_count", ())]
        assert durations == samples[("events_pipeline_batches_total", ())]
        assert samples[("events_pipeline_last_commit_timestamp_seconds", ())] > 0
        assert not [name for name, _ in samples if name.endswith("_created")]
        known = {dict(labels)["reason"] for name, labels in samples
                 if name == "events_pipeline_rows_rejected_total"}
        assert set(REJECT_REASONS) | set(FILE_REASONS) <= known
        assert samples[("process_resident_memory_bytes", ())] > 0
        build = [dict(labels) for name, labels in samples if name == "events_pipeline_build_info"]
        assert build == [{"version": __version__, "spark": "4.1.1",
                          "python": platform.python_version()}]
        assert promtool_check_metrics(port) == ""
        assert get(port, "/healthz")[0] == 200
        assert samples[("events_pipeline_db_retries_total", ())] == 0
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
