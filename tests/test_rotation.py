"""Checkpoint rotation: past --checkpoint-rotate-files files the job goes on in a fresh
checkpoint generation and removes the old one, losing and doubling nothing."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from pipeline.job.generations import POINTER_FILE
from pipeline.job.generations import SPARK_ENTRIES
from pipeline.job.generations import CheckpointGenerations
from pipeline.job.generations import RotationCheck
from pipeline.job.generations import files_logged
from pipeline.job.generations import read_generation
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job


# -- the pure parts --------------------------------------------------------------------------
def test_rotation_waits_until_the_log_is_past_the_limit():
    check = RotationCheck(100)
    check.started(logged=40, taken=0)
    assert not check.check(60, lambda: 0)  # 100 files: not past the limit
    assert check.check(61, lambda: 0)
    assert check.due and check.relisted == 0


def test_rotation_is_refused_while_the_files_stay_in_the_source(caplog):
    check = RotationCheck(100)
    check.started(logged=0, taken=0)
    assert not check.check(101, lambda: 101)
    assert "not rotated" in caplog.text and "101 loaded files are still" in caplog.text
    looked = []
    assert not check.check(105, lambda: looked.append(1) or 0)
    assert looked == []  # not looked again before the log grows by another tenth
    assert check.check(112, lambda: 10)


def test_rotation_asks_again_later_when_it_cannot_tell(caplog):
    check = RotationCheck(100)
    check.started(logged=0, taken=0)
    assert not check.check(101, lambda: None)  # the database did not answer, say
    assert "not rotated" not in caplog.text
    assert check.check(112, lambda: 0)


def test_a_small_limit_never_rotates_for_files_a_new_generation_would_list_again():
    check = RotationCheck(50)
    check.started(logged=0, taken=0)
    assert not check.check(51, lambda: 30)  # 30 would be listed again: more than half of 50
    assert check.check(60, lambda: 25)


def test_an_unreadable_pointer_is_a_clear_error(tmp_path):
    (tmp_path / POINTER_FILE).mkdir()
    with pytest.raises(ValueError, match="cannot be read"):
        read_generation(tmp_path)


def test_rotation_is_off_at_zero():
    check = RotationCheck(0)
    check.started(logged=10**6, taken=0)
    assert not check.check(10**6, lambda: 0)


def test_a_switch_keeps_the_old_generation_until_the_new_one_commits(tmp_path):
    root = tmp_path / "checkpoint"
    (root / "offsets").mkdir(parents=True)
    (root / "metadata").write_text("{}")
    generations = CheckpointGenerations(root)
    assert generations.location == root and generations.current == 0

    new = generations.switch()
    assert new == root / "generation-1" and new.is_dir()
    assert read_generation(root) == 1 == CheckpointGenerations(root).current
    assert generations.retire_old() == 0  # no commit in generation 1 yet
    assert (root / "offsets").is_dir()

    (new / "commits").mkdir()
    (new / "commits" / "0").write_text("v1\n{}")
    assert generations.retire_old() == 2
    assert not (root / "offsets").exists() and not (root / "metadata").exists()
    assert new.is_dir() and (root / POINTER_FILE).is_file()


def test_a_switch_killed_before_its_pointer_leaves_the_old_generation_current(tmp_path):
    root = tmp_path / "checkpoint"
    (root / "generation-3").mkdir(parents=True)  # made, but the pointer still says 2
    (root / "generation-3" / "stray").write_text("x")
    (root / POINTER_FILE).write_text("2\n")
    generations = CheckpointGenerations(root)
    assert generations.location == root / "generation-2"
    assert generations.switch() == root / "generation-3"
    assert list((root / "generation-3").iterdir()) == []


def test_the_log_size_counts_the_latest_compaction_and_what_follows(tmp_path):
    log = tmp_path / "sources" / "0"
    log.mkdir(parents=True)
    (log / "8").write_text('v1\n{"path":"a"}\n')  # compacted into 9.compact
    (log / "9.compact").write_text("v1\n" + '{"path":"x"}\n' * 10)
    (log / "10").write_text('v1\n{"path":"b"}\n{"path":"c"}\n')
    assert files_logged(tmp_path) == 12
    assert files_logged(tmp_path / "nothing") == 0


# -- the job ----------------------------------------------------------------------------------
def generations_left(checkpoint: Path) -> list[str]:
    return sorted(p.name for p in checkpoint.iterdir()
                  if p.name.startswith("generation-") or p.name in SPARK_ENTRIES)


def loaded_files(database) -> list[tuple]:
    return database.query("SELECT source_file, status, rows_read FROM ingest_files"
                          " ORDER BY source_file")


def test_the_job_rotates_and_loads_every_file_once(tmp_path, database):
    source, checkpoint, archive = tmp_path / "data", tmp_path / "checkpoint", tmp_path / "old"
    run_generator(source, "--files", "24", "--seed", "7", "--events-per-file", "5")
    expected = expected_events(source)

    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(checkpoint), "--once", "--checkpoint-rotate-files", "5",
                   "--clean-source", "archive", "--archive-dir", str(archive), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(events_in_db(database)) == sorted(expected)
    files = loaded_files(database)
    assert len(files) == 24 and {f[1] for f in files} == {"loaded"}
    generation = read_generation(checkpoint)
    assert generation >= 2, done.stderr[-3000:]
    assert "checkpoint rotated" in done.stderr
    # Only the current generation is left (the old ones went after its first commit).
    assert generations_left(checkpoint) == [f"generation-{generation}"]
    # Its log holds only what it listed itself, never the whole history: generations 0 and
    # 1 each took more than 5 files, and with --clean-source archive only the last batch's
    # file can still be in the folder to be listed again. (How far past the limit a
    # generation gets depends on how many batches end between two checks: not asserted.)
    assert files_logged(checkpoint / f"generation-{generation}") < 24
    report = subprocess.run([PYTHON, "-m", "pipeline.ops.status", "--source", str(source),
                             "--checkpoint", str(checkpoint), "--json"], cwd=ROOT,
                            env=database.job_env(), capture_output=True, text=True, timeout=60)
    facts = json.loads(report.stdout)
    assert facts["checkpoint_generation"] == generation, report.stderr
    assert facts["checkpoint_folder"] == str(checkpoint / f"generation-{generation}")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["rotation_switched", "rotation_retiring"])
def test_a_kill_during_the_switch_loses_and_doubles_nothing(tmp_path, database, moment):
    """kill -9 right after a new generation became current, or while the old one is being
    removed; the restarted job finishes with every event once."""
    seed = random.randrange(10**6)
    print(f"seed {seed}")
    source, checkpoint, archive = tmp_path / "data", tmp_path / "checkpoint", tmp_path / "old"
    run_generator(source, "--files", "16", "--seed", str(seed), "--events-per-file", "5")
    expected = expected_events(source)
    args = ("--source", str(source), "--checkpoint", str(checkpoint), "--once",
            "--checkpoint-rotate-files", "4", "--clean-source", "archive",
            "--archive-dir", str(archive))
    job = start_job(database.job_env(), *args, log_path=tmp_path / "job.log",
                    crash=(moment, "batch=1"))
    try:
        job.wait(timeout=600)
    finally:
        kill_group(job)
    log = (tmp_path / "job.log").read_text()
    assert "crash point" in log, log[-3000:]

    done = run_job(database.job_env(), *args, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert sorted(events_in_db(database)) == sorted(expected)
    files = loaded_files(database)
    assert len(files) == 16 and {f[1] for f in files} == {"loaded"}
    duplicates = database.query("SELECT count(*) - count(DISTINCT event_id) FROM events")
    assert duplicates == [(0,)]
    generation = read_generation(checkpoint)
    assert generations_left(checkpoint) == [f"generation-{generation}"]
