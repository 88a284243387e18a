"""No modification time hides a file: dated in the future, long ago, before 1970, equal to
another's or going backwards, every file is loaded, on every run and across restarts, and
the backlog gauge counts every file waiting. Real Spark, the real job, the real database;
what is loaded is read from the tables and compared with the folder."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job
from tests.test_metrics import free_port
from tests.test_metrics import scrape

SEED = 2204  # the generator's seed, fixed: the same rows every run


def at(*date: int) -> float:
    return datetime(*date, tzinfo=UTC).timestamp()


FUTURE = at(2040, 1, 1)
Y2015 = at(2015, 6, 1)
EPOCH = 0.0
BEFORE_1970 = at(1969, 6, 1)


class Files:
    """Generated CSV files, put into the source folder one at a time with a chosen date."""

    def __init__(self, tmp_path: Path, count: int):
        self.staged = tmp_path / "staged"
        run_generator(self.staged, "--files", str(count), "--seed", str(SEED))
        self._left = sorted(self.staged.glob("events_*.csv"))
        self.source = tmp_path / "data"
        self.source.mkdir()

    def add(self, label: str, when: float | None = None) -> Path:
        """The next generated file as events_<label>.csv, modified at `when` (None: now)."""
        path = self.source / f"events_{label}.csv"
        self._left.pop(0).rename(path)
        if when is not None:
            os.utime(path, (when, when))
        return path


def once(database, files: Files, checkpoint: Path) -> str:
    done = run_job(database.job_env(), "--source", str(files.source), "--checkpoint",
                   str(checkpoint), "--once")
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


def assert_every_file_loaded(database, files: Files) -> None:
    folder = files.source.resolve()
    expected = {(f"file:{folder / p.name}", "loaded") for p in folder.glob("events_*.csv")}
    assert set(database.query("SELECT source_file, status FROM ingest_files")) == expected
    assert sorted(events_in_db(database)) == sorted(expected_events(files.source))


def test_a_file_dated_in_the_future_hides_no_later_file(tmp_path, database):
    files, checkpoint = Files(tmp_path, 5), tmp_path / "ck"
    files.add("a_now")
    once(database, files, checkpoint)
    files.add("b_2040", FUTURE)
    files.add("c_now")
    once(database, files, checkpoint)
    assert_every_file_loaded(database, files)
    # Spark has now seen a file of 2040: the later files, dated now, are loaded all the same.
    files.add("d_now")
    files.add("e_now")
    once(database, files, checkpoint)
    assert_every_file_loaded(database, files)


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_files_dated_long_ago_after_a_current_file_are_loaded(tmp_path, database):
    files, checkpoint = Files(tmp_path, 7), tmp_path / "ck"
    first = files.add("a_now")
    once(database, files, checkpoint)
    files.add("b_2015", Y2015)
    files.add("c_1970", EPOCH)
    files.add("d_1969", BEFORE_1970)
    same = first.stat().st_mtime
    files.add("e_same_as_a", same)
    files.add("f_backwards", Y2015 - 86400)  # older than b, added after it
    once(database, files, checkpoint)
    assert_every_file_loaded(database, files)
    files.add("g_1970_after_restart", EPOCH)
    once(database, files, checkpoint)
    assert_every_file_loaded(database, files)


def test_the_backlog_gauge_counts_every_waiting_file_whatever_its_date(tmp_path, database):
    files = Files(tmp_path, 5)
    files.add("a_now")
    port = free_port()
    log_path = tmp_path / "job.log"
    # One micro-batch at the start, the next an hour later: the files added meanwhile wait.
    job = start_job(database.job_env(), "--source", str(files.source), "--checkpoint",
                    str(tmp_path / "ck"), "--metrics-port", str(port),
                    "--trigger-interval", "3600", log_path=log_path)
    try:
        deadline = time.monotonic() + 240
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 1:
            assert job.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(1)
        for label, when in (("b_2040", FUTURE), ("c_2015", Y2015), ("d_1970", EPOCH),
                            ("e_1969", BEFORE_1970)):
            files.add(label, when)
        # Spark never lists a link to nothing: the job quarantines it, it does not wait.
        link = files.source / "events_link.csv"
        link.symlink_to(tmp_path / "nowhere.csv")
        waiting = 4
        deadline = time.monotonic() + 120
        samples = {}
        while samples.get(("events_pipeline_backlog_files", ())) != waiting:
            assert job.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, (samples.get(("events_pipeline_backlog_files", ())),
                                                 log_path.read_text()[-3000:])
            time.sleep(1)
            samples = scrape(port)
        # The source of truth agrees: one file loaded, the link quarantined, nothing else.
        folder = files.source.resolve()
        assert sorted(database.query("SELECT source_file, status, status_reason FROM"
                                     " ingest_files")) == [
            (f"file:{folder / 'events_a_now.csv'}", "loaded", None),
            (f"file:{folder / 'events_link.csv'}", "quarantined", "symlink")]
        assert samples[("events_pipeline_backlog_oldest_file_age_seconds", ())] >= 0
        kill_group(job, signal.SIGTERM)
    finally:
        if job.poll() is None:
            kill_group(job)
