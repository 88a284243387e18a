"""Status, chart and reconcile read a known database state correctly."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT

QUERY = "11111111-2222-3333-4444-555555555555"


def seed(database, source: Path) -> None:
    """Three committed batches (latency 1 s, 2 s, 10 s) and one loaded file."""
    loaded = source / "events_loaded.csv"
    loaded.write_text("x\n")
    for batch_id, latency, age in ((0, 1, 30), (1, 2, 20), (2, 10, 10)):
        database.query(
            "INSERT INTO ingest_batches VALUES (%s, %s, 1, 0, 21, 20, 1, 0,"
            " UTC_TIMESTAMP(6) - INTERVAL %s SECOND - INTERVAL %s SECOND,"
            " UTC_TIMESTAMP(6) - INTERVAL %s SECOND, 100, 5, 1,"
            " UTC_TIMESTAMP(6) - INTERVAL %s SECOND, '[]')",
            (QUERY, batch_id, age, latency, age, age))
    database.query("INSERT INTO ingest_files (file_key, source_file, file_modified_at, query_id,"
                   " batch_id, rows_read, rows_written, rows_rejected, rows_duplicate, status,"
                   " committed_at) VALUES (SHA2(%s, 256), %s, NULL, %s, 0, 21, 20, 1, 0,"
                   " 'loaded', UTC_TIMESTAMP(6))",
                   (f"file:{loaded}", f"file:{loaded}", QUERY))
    database.query("INSERT INTO events_rejected (source_file, line_number, reason, query_id,"
                   " batch_id, rejected_at) VALUES ('f', 2, 'bad_price', %s, 0,"
                   " UTC_TIMESTAMP(6)), ('f', 3, 'bad_price', %s, 0, UTC_TIMESTAMP(6)),"
                   " ('f', 4, 'missing_user_id', %s, 0, UTC_TIMESTAMP(6))", (QUERY,) * 3)


def status(database, source: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "pipeline.ops.status", "--source", str(source),
                           "--checkpoint", str(source.parent / "ck"), *args], cwd=ROOT,
                          env=database.job_env(), capture_output=True, text=True, timeout=60)


def test_status_json_gives_the_figures_of_the_tables(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    result = status(database, source, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] and report["batches_total"] == 3
    assert (report["rows_read_total"], report["rows_rejected_total"]) == (63, 3)
    assert report["latency_p50_s"] == 2.0 and report["latency_p99_s"] == 10.0
    assert report["rejected_by_reason"] == {"bad_price": 2, "missing_user_id": 1}
    assert report["backlog_files"] == 0 and report["job_alive"] is None
    assert [b["batch_id"] for b in report["recent_batches"]] == [2, 1, 0]
    assert 1.0 < report["throughput_rows_per_s"] < 3.0  # 42 rows over 20 s
    table = status(database, source)
    assert "latency p50 2.00s  p99 10.00s" in table.stdout and "bad_price 2" in table.stdout


def test_waiting_files_without_commits_make_it_unhealthy(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    waiting = source / "events_waiting.csv"
    waiting.write_text("x\n")
    old = time.time() - 600
    os.utime(waiting, (old, old))
    result = status(database, source, "--json", "--stale-after", "5")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and not report["healthy"]
    assert report["backlog_files"] == 1 and report["oldest_waiting_file_age_s"] >= 599
    assert "waiting and no commit" in report["problems"][0]


def test_chart_writes_a_png(tmp_path, database):
    seed(database, tmp_path)
    out = tmp_path / "chart.png"
    result = subprocess.run([PYTHON, "-m", "pipeline.ops.chart", "--output", str(out)], cwd=ROOT,
                            env=database.job_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "3 batches" in result.stdout
