"""Status, chart and reconcile read a known database state correctly."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from pipeline.contract import HEARTBEAT_FILE
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


def status(database, source: Path, *args: str, checkpoint: Path | None = None
           ) -> subprocess.CompletedProcess:
    if checkpoint is None:
        checkpoint = source.parent / "ck"
        checkpoint.mkdir(exist_ok=True)
    return subprocess.run([PYTHON, "-m", "pipeline.ops.status", "--source", str(source),
                           "--checkpoint", str(checkpoint), *args], cwd=ROOT,
                          env=database.job_env(), capture_output=True, text=True, timeout=60)


def write_heartbeat(checkpoint: Path, pid: int) -> None:
    beat = {"pid": pid, "started_at": time.time(), "updated_at": time.time(), "source": "x"}
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / HEARTBEAT_FILE).write_text(json.dumps(beat))


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


def test_paths_that_do_not_exist_are_unhealthy_with_a_clear_line(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    missing_source = status(database, tmp_path / "no-such-data")
    assert missing_source.returncode == 1, missing_source.stdout
    assert f"source folder {tmp_path / 'no-such-data'} does not exist" in missing_source.stdout
    missing_checkpoint = status(database, source, checkpoint=tmp_path / "no-such-ck")
    assert missing_checkpoint.returncode == 1, missing_checkpoint.stdout
    assert f"checkpoint folder {tmp_path / 'no-such-ck'} does not exist" \
        in missing_checkpoint.stdout


def test_files_waiting_without_a_running_job_are_unhealthy(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    (source / "events_new.csv").write_text("x\n")  # just written: not stale
    no_heartbeat = status(database, source, "--json")
    report = json.loads(no_heartbeat.stdout)
    assert no_heartbeat.returncode == 1 and report["backlog_files"] == 1
    assert any("not running: no heartbeat" in p for p in report["problems"])
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    write_heartbeat(tmp_path / "ck", dead.pid)
    dead_job = status(database, source)
    assert dead_job.returncode == 1 and "the streaming job is not running" in dead_job.stdout
    write_heartbeat(tmp_path / "ck", os.getpid())  # a live process, a fresh heartbeat
    alive = status(database, source)
    assert alive.returncode == 0, alive.stdout


def test_waiting_files_count_whatever_their_modification_time(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    write_heartbeat(tmp_path / "ck", os.getpid())
    os.utime(source / "events_loaded.csv", (2208988800 + 1, 2208988800 + 1))
    times = {"future": 2208988800, "y2015": 1420070400, "epoch": 0, "before": -86400}
    for name, when in times.items():
        path = source / f"events_{name}.csv"
        path.write_text("x\n")
        os.utime(path, (when, when))
        result = status(database, source, "--json", "--stale-after", "5")
        report = json.loads(result.stdout)
        # No commit for 10 s; a date in the future says nothing of how long a file waited.
        assert result.returncode == 1 and "waiting and no commit" in report["problems"][0]
    assert report["backlog_files"] == len(times), report


def test_a_dangling_symlink_or_a_damaged_heartbeat_gives_no_traceback(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    (source / "events_link.csv").symlink_to(tmp_path / "nowhere.csv")
    checkpoint = tmp_path / "ck"
    checkpoint.mkdir()
    for damage in ("{not json", "[]", '{"pid": "x", "updated_at": 1}', '{"pid": 1}',
                   '{"pid": 0, "updated_at": 1}'):
        (checkpoint / HEARTBEAT_FILE).write_text(damage)
        result = status(database, source, "--json")
        assert "Traceback" not in result.stderr, result.stderr
        report = json.loads(result.stdout)
        assert result.returncode == 1 and report["backlog_files"] == 1, damage
        assert any(f"{HEARTBEAT_FILE} is damaged" in p for p in report["problems"]), report


def test_files_the_checkpoint_lists_as_read_but_the_tables_lack_are_reported(tmp_path,
                                                                             database):
    source = tmp_path / "data"
    source.mkdir()
    seed(database, source)
    lost = source / "events_lost.csv"
    lost.write_text("x\n")
    checkpoint = tmp_path / "ck"
    write_heartbeat(checkpoint, os.getpid())
    (checkpoint / "sources" / "0").mkdir(parents=True)
    (checkpoint / "commits").mkdir()
    (checkpoint / "sources" / "0" / "0").write_text(
        "v1\n" + json.dumps({"path": lost.as_uri(), "timestamp": 1, "batchId": 0}))
    in_flight = status(database, source)
    assert in_flight.returncode == 0, in_flight.stdout  # batch 0 not committed by Spark yet
    (checkpoint / "commits" / "0").write_text("v1\n{}")
    result = status(database, source)
    assert result.returncode == 1, result.stdout
    assert f"1 file(s) waiting that the checkpoint lists as read (first: file:{lost})" \
        in result.stdout
