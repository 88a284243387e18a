"""Catching up on a backlog with big micro-batches, and cleaning loaded files out of the
source folder: both keep every event exactly once."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job


def wait_for_files(database, count: int, job, log_path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while database.query("SELECT count(*) FROM ingest_files")[0][0] < count:
        assert job.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.3)


def test_a_backlog_is_taken_in_big_batches_then_one_file_per_batch(tmp_path, database):
    source, log_path = tmp_path / "data", tmp_path / "job.log"
    run_generator(source, "--files", "25", "--seed", "41")
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(tmp_path / "ck"), "--catch-up-files", "10", log_path=log_path)
    try:
        wait_for_files(database, 25, job, log_path)
        for extra in range(2):  # the steady flow after the backlog: one file at a time
            run_generator(source, "--files", "1", "--seed", str(42 + extra))
            wait_for_files(database, 26 + extra, job, log_path)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
    log = log_path.read_text()
    assert "catching up with up to 10 files per micro-batch" in log and "caught up" in log
    sizes = [n for (n,) in database.query("SELECT file_count FROM ingest_batches"
                                          " ORDER BY committed_at, batch_id")]
    assert sum(sizes) == 27
    assert max(sizes[:3]) == 10, sizes  # the backlog: full catch-up batches
    assert sizes[-2:] == [1, 1], sizes  # the steady flow: one file per batch again
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_a_flow_faster_than_the_steady_query_stays_in_catch_up(tmp_path, database):
    """20 files/s, far beyond one file per trigger: the job must not restart its query every
    few seconds (it did, in a soak), but stay in big batches, and lose nothing."""
    source, log_path = tmp_path / "data", tmp_path / "job.log"
    source.mkdir()
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(tmp_path / "ck"), "--catch-up-files", "50", log_path=log_path)
    generator = subprocess.Popen([PYTHON, str(ROOT / "data_generator.py"), "--output-dir",
                                  str(source), "--interval", "0.05", "--files", "1000",
                                  "--seed", "45", "--quiet"])
    try:
        assert generator.wait(timeout=180) == 0
        wait_for_files(database, 1000, job, log_path)
        deadline = time.monotonic() + 120
        while "the flow slowed down" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(1)
        # Back in the steady query: one file per micro-batch.
        run_generator(source, "--files", "1", "--seed", "46")
        wait_for_files(database, 1001, job, log_path)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        generator.kill()
        kill_group(job)
    log = log_path.read_text()
    assert "files arrive faster than 1 per micro-batch can take" in log, log[-3000:]
    assert log.count("catching up with up to 50 files") <= 3, log[-3000:]
    last = database.query("SELECT file_count FROM ingest_batches ORDER BY committed_at DESC,"
                          " batch_id DESC LIMIT 1")
    assert last == [(1,)]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))


def test_once_with_catch_up_loads_everything_exactly_once(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "30", "--seed", "43")
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--catch-up-files", "100")
    assert done.returncode == 0, done.stderr[-3000:]
    assert database.query("SELECT count(*), sum(file_count) FROM ingest_batches") == [(1, 30)]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))


def test_clean_source_archive_moves_only_committed_files(tmp_path, database):
    source, archive = tmp_path / "data", tmp_path / "archive"
    run_generator(source, "--files", "6", "--seed", "44")
    expected = expected_events(source)
    names = {p.name for p in source.glob("events_*.csv")}
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--clean-source", "archive",
                   "--archive-dir", str(archive))
    assert done.returncode == 0, done.stderr[-3000:]
    archived = {p.name for p in archive.rglob("events_*.csv")}
    left = {p.name for p in source.glob("events_*.csv")}
    # Spark archives a batch's files while planning the next one: all but the last go.
    assert archived | left == names and len(archived) >= len(names) - 1, (archived, left)
    loaded = {row[0].rsplit("/", 1)[-1] for row in database.query(
        "SELECT source_file FROM ingest_files")}
    assert archived <= loaded
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected)
    # Archived files are not read again, even after the checkpoint is lost.
    again = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(tmp_path / "ck2"), "--once")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(events_in_db(database)) == sorted(ids)


def test_archive_inside_the_source_folder_is_refused(tmp_path, database):
    source = tmp_path / "data"
    source.mkdir()
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--clean-source", "archive",
                   "--archive-dir", str(source / "done"))
    assert done.returncode == 2
    assert "must be outside the source folder" in done.stderr
    assert "Traceback" not in done.stderr
