"""A damaged checkpoint heals itself, and a checkpoint in use refuses a second job.

A power cut can leave a checkpoint file empty or cut short (Spark renames its files without
an fsync). One real job loads files; then, for each kind of checkpoint file, a copy of its
checkpoint is damaged and the real job restarted on the copy: it must name the file, go on
in a fresh generation, keep the damaged one aside, and leave every valid event in the
database once (checked against the files themselves).
"""

from __future__ import annotations

import itertools
import random
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import MySQLSettings
from pipeline.errors import CheckpointDamaged
from pipeline.job.generations import DAMAGED_PREFIX
from pipeline.job.generations import POINTER_FILE
from pipeline.job.generations import read_generation
from pipeline.job.lock import LOCK_FILE
from pipeline.ops.setup_db import setup_database
from pipeline.read.checkpoint import CheckpointLog
from pipeline.read.checkpoint_files import find_damage
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import Database
from tests.support.jobs import drop_database
from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job

SEED = random.Random().randrange(10**6)
FILES = 4
NEW_FILE_SEEDS = itertools.count(SEED + 1)
# The real job with compaction every 3rd batch instead of every 100th, so that 4 batches
# leave a real `sources/0/2.compact` (and `sources/0/3` after it) to damage.
COMPACTING_JOB = (
    "import sys\n"
    f"sys.path.insert(0, {str(ROOT)!r})\n"
    "from pipeline.job import session\n"
    "session.LOCAL_CHECKPOINT_CONF['spark.sql.streaming.fileSource.log.compactInterval'] = '3'\n"
    "from spark_streaming import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@dataclass(frozen=True)
class Loaded:
    """The first job's result: its database, source folder and checkpoint."""

    database: Database
    source: Path
    checkpoint: Path


@pytest.fixture(scope="module")
def module_database(mysql_server) -> Iterator[Database]:
    """One database for the module: every restart meets the ledger of the first load."""
    suffix = uuid.uuid4().hex[:10]
    db = Database(mysql_server, f"test_{suffix}", f"p_{suffix}", secrets.token_urlsafe(12))
    settings = MySQLSettings(host=mysql_server.host, port=mysql_server.port, database=db.name,
                             user=db.user, password=db.password, ssl_mode="DISABLED",
                             ssl_ca=None)
    accounts = setup_database(settings, mysql_server.user, mysql_server.password)
    try:
        yield db
    finally:
        drop_database(mysql_server, db.name, accounts)


@pytest.fixture(scope="module")
def loaded(module_database, tmp_path_factory) -> Loaded:
    print(f"seed {SEED}")
    tmp = tmp_path_factory.mktemp("damage")
    source, checkpoint = tmp / "data", tmp / "checkpoint"
    run_generator(source, "--files", str(FILES), "--seed", str(SEED), "--events-per-file", "5")
    done = subprocess.run([PYTHON, "-c", COMPACTING_JOB, "--source", str(source),
                           "--checkpoint", str(checkpoint), "--once"], cwd=ROOT,
                          env=module_database.job_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    logged = sorted(p.name for p in (checkpoint / "sources" / "0").iterdir()
                    if not p.name.startswith("."))
    # (0 and 1 stay too: Spark deletes superseded log files only past minBatchesToRetain.)
    assert "2.compact" in logged and "3" in logged, logged
    assert find_damage(checkpoint) is None  # what Spark wrote is never taken for damage
    assert_every_event_once(module_database, source)
    return Loaded(module_database, source, checkpoint)


def assert_every_event_once(database: Database, source: Path) -> None:
    """From the database, against the files: every valid event once, every file once."""
    got = events_in_db(database)
    assert len(got) == len(set(got)), "an event is in the database twice"
    assert sorted(got) == sorted(expected_events(source))
    files = database.query("SELECT source_file, status FROM ingest_files")
    names = sorted(f[0] for f in files)
    assert names == sorted(f"file:{p}" for p in source.glob("events_*.csv"))
    assert {f[1] for f in files} == {"loaded"}
    rejects = database.query("SELECT count(*), count(DISTINCT source_file, line_number)"
                             " FROM events_rejected")
    assert rejects[0][0] == rejects[0][1], "a rejected row is recorded twice"


def damage(path: Path, how: str) -> None:
    if how == "empty":
        path.write_bytes(b"")
    elif how == "cut":  # in the middle, its .crc left as it was
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:  # "zeroed": what some file systems leave after a crash
        path.write_bytes(b"\0" * max(2, path.stat().st_size if path.exists() else 0))


LOG_FILES = ["metadata", "offsets/3", "commits/3", "sources/0/3", "sources/0/2.compact"]
# Each case is a real job run: the default suite takes one of each kind of damage (a log
# entry empty, a compacted log cut, the pointer zeroed); the slow suite takes every case.
IN_DEFAULT_SUITE = {"offsets/3-empty", "sources/0/2.compact-cut", "pointer-zeroed"}


def _case(relative: str, how: str, name: str):
    slow = f"{name}-{how}" not in IN_DEFAULT_SUITE
    return pytest.param(relative, how, id=f"{name}-{how}",
                        marks=[pytest.mark.slow] if slow else [])


CASES = ([_case(f, how, f) for f in LOG_FILES for how in ("empty", "cut")]
         + [_case(POINTER_FILE, how, "pointer") for how in ("empty", "zeroed")])


@pytest.mark.parametrize("relative, how", CASES)
def test_a_damaged_checkpoint_heals_and_loses_and_doubles_nothing(loaded, tmp_path,
                                                                  relative, how):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(loaded.checkpoint, checkpoint)
    damaged = checkpoint / relative
    damage(damaged, how)
    # A file the first job never saw: the healed job must go on and load it.
    run_generator(loaded.source, "--files", "1", "--seed", str(next(NEW_FILE_SEEDS)),
                  "--events-per-file", "5")

    done = run_job(loaded.database.job_env(), "--source", str(loaded.source),
                   "--checkpoint", str(checkpoint), "--once", timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    heal_lines = [line for line in done.stderr.splitlines()
                  if "going on in a fresh checkpoint generation" in line]
    assert len(heal_lines) == 1, done.stderr[-4000:]
    assert f"checkpoint file {damaged} " in heal_lines[0]
    # The damage was found before Spark met it: no Java trace, no Python traceback.
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    assert_every_event_once(loaded.database, loaded.source)

    generation = read_generation(checkpoint)
    assert generation == 1
    kept = sorted(p for p in checkpoint.iterdir() if p.name.startswith(DAMAGED_PREFIX))
    if relative == POINTER_FILE:
        # No generation was damaged: generation 0 went after the new one's first commit.
        assert kept == [] and not (checkpoint / "offsets").exists()
    else:
        assert len(kept) == 1 and kept[0].name.startswith(f"{DAMAGED_PREFIX}0-")
        assert (kept[0] / relative).read_bytes() == damaged_bytes(loaded.checkpoint / relative,
                                                                  how)
        assert not (checkpoint / "offsets").exists()  # nothing of it left current


def damaged_bytes(original: Path, how: str) -> bytes:
    data = original.read_bytes()
    return b"" if how == "empty" else data[: len(data) // 2]


def test_a_sound_checkpoint_is_not_healed(loaded, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(loaded.checkpoint, checkpoint)
    done = run_job(loaded.database.job_env(), "--source", str(loaded.source),
                   "--checkpoint", str(checkpoint), "--once", timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "fresh checkpoint generation" not in done.stderr
    assert read_generation(checkpoint) == 0
    assert not any(p.name.startswith(DAMAGED_PREFIX) for p in checkpoint.iterdir())
    assert_every_event_once(loaded.database, loaded.source)


def test_a_cut_at_a_line_end_is_caught_by_the_checksum(loaded, tmp_path):
    """Cut after a whole line the JSON still parses; Spark's reader fails on the .crc."""
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(loaded.checkpoint, checkpoint)
    compact = checkpoint / "sources" / "0" / "2.compact"
    lines = compact.read_bytes().split(b"\n")
    compact.write_bytes(b"\n".join(lines[:-1]))
    found = find_damage(checkpoint)
    assert found is not None and found.path == str(compact)
    assert "checksum" in found.problem


@pytest.mark.parametrize("how", ["empty", "cut"])
def test_our_reader_names_a_damaged_file_instead_of_crashing(loaded, tmp_path, spark, how):
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(loaded.checkpoint, checkpoint)
    for superseded in ("1", ".1.crc"):  # as Spark's clean-up leaves it: batch 1 in 2.compact
        (checkpoint / "sources" / "0" / superseded).unlink()
    reader = CheckpointLog(spark, str(checkpoint))
    # batch 3: offsets/2 and offsets/3, then sources/0/3; batch 1: in sources/0/2.compact.
    for batch_id, relative in [(3, "offsets/3"), (3, "sources/0/3"),
                               (1, "sources/0/2.compact")]:
        path = checkpoint / relative
        original = path.read_bytes()
        damage(path, how)
        with pytest.raises(CheckpointDamaged) as caught:
            reader.files_of_batch(batch_id)
        assert caught.value.path == str(path), relative
        path.write_bytes(original)
        assert reader.files_of_batch(batch_id), relative


# -- a second job ------------------------------------------------------------------------------
def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(1)


def test_a_second_job_on_a_checkpoint_in_use_stops_in_one_line(tmp_path, database):
    source, checkpoint = tmp_path / "data", tmp_path / "checkpoint"
    run_generator(source, "--files", "2", "--seed", str(SEED), "--events-per-file", "5")
    log_path = tmp_path / "first.log"
    first = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                      str(checkpoint), log_path=log_path)
    try:
        wait_for(lambda: "streaming " in log_path.read_text(), 300, "the first job")
        second = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                         str(checkpoint), "--once", timeout=300)
        assert second.returncode == 2, second.stderr[-4000:]
        errors = [line for line in second.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1, second.stderr
        assert (f"checkpoint {checkpoint} is in use by another job (pid {first.pid})"
                in errors[0]), errors
        assert "stop that job first" in errors[0]
        assert "Traceback" not in second.stderr and "Exception" not in second.stderr
        assert first.poll() is None, "the first job stopped"

        # The first job goes on: a file arriving now is loaded once, by it.
        run_generator(source, "--files", "1", "--seed", str(next(NEW_FILE_SEEDS)),
                      "--events-per-file", "5")
        wait_for(lambda: len(database.query("SELECT 1 FROM ingest_files")) == 3, 300,
                 "the first job to load the new file")
    finally:
        kill_group(first, 15)  # SIGTERM: it stops between batches
    assert first.returncode == 0, log_path.read_text()[-4000:]
    got = events_in_db(database)
    assert len(got) == len(set(got)) and sorted(got) == sorted(expected_events(source))
    # The lock went with its holder: the next job on the checkpoint runs.
    again = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), "--once", timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (checkpoint / LOCK_FILE).exists()


# -- the generations, without Spark ------------------------------------------------------------
def test_a_damaged_later_generation_is_set_aside_whole(tmp_path):
    from pipeline.job.generations import CheckpointGenerations

    root = tmp_path / "checkpoint"
    (root / "generation-2" / "offsets").mkdir(parents=True)
    (root / "generation-2" / "offsets" / "7").write_bytes(b"")
    (root / POINTER_FILE).write_text("2\n")
    generations = CheckpointGenerations(root)
    found = generations.damage()
    assert found == f"checkpoint file {root / 'generation-2' / 'offsets' / '7'} is empty"
    assert generations.heal(found) == root / "generation-3"
    assert read_generation(root) == 3 and not (root / "generation-2").exists()
    kept = [p for p in root.iterdir() if p.name.startswith(f"{DAMAGED_PREFIX}2-")]
    assert len(kept) == 1 and (kept[0] / "offsets" / "7").exists()
    assert generations.damage() is None
    assert kept[0] not in generations.old_generations()  # never removed by the job


def test_a_damaged_pointer_starts_past_every_generation(tmp_path):
    from pipeline.job.generations import CheckpointGenerations

    root = tmp_path / "checkpoint"
    for n in (4, 5):
        (root / f"generation-{n}").mkdir(parents=True)
    (root / POINTER_FILE).write_bytes(b"\0\0")
    generations = CheckpointGenerations(root)
    assert "generation holds" in generations.damage()
    assert generations.heal(generations.damage()) == root / "generation-6"
    assert read_generation(root) == 6
    assert generations.old_generations() == [root / "generation-4", root / "generation-5"]
