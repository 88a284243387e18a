"""Local faults: a checkpoint that cannot be written, a disk that fills up mid-stream.
Each ends with a clear message, and what was committed stays committed exactly once."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.jobs import events_in_db
from tests.support.jobs import expected_events
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job


def test_checkpoint_that_cannot_be_created_is_a_clear_error(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "2", "--seed", "51")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint's parent folder should be")
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(blocker / "ck"), "--once")
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "checkpoint folder" in output and "is not writable" in output
    assert "Traceback" not in output and "\tat org." not in output
    assert events_in_db(database) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up. Needs root (mount); skipped elsewhere."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", f"tiny-{uuid.uuid4().hex[:6]}",
                           str(mount_point)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill(disk: Path) -> None:
    """Take every free byte of the disk, leaving nothing for the checkpoint."""
    with open(disk / "ballast", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


@pytest.mark.slow  # a long real run; .ci/run runs it after the default suite
def test_full_disk_under_the_checkpoint_stops_the_job_and_loses_nothing(
        tmp_path, database, tiny_disk):
    source, log_path = tmp_path / "data", tmp_path / "job.log"
    checkpoint = tiny_disk / "ck"
    run_generator(source, "--files", "3", "--seed", "52")
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), log_path=log_path)
    try:
        deadline = time.monotonic() + 240
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 3:
            assert job.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        fill(tiny_disk)
        run_generator(source, "--files", "3", "--seed", "53")
        assert job.wait(timeout=180) == 1
    finally:
        kill_group(job)
    log = log_path.read_text()
    assert "stopped by an error" in log and "No space left on device" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    # Free the disk, start again on the same checkpoint: the rest is loaded, nothing twice.
    (tiny_disk / "ballast").unlink()
    again = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(checkpoint), "--once")
    assert again.returncode == 0, again.stderr[-3000:]
    ids = events_in_db(database)
    assert len(ids) == len(set(ids)) and set(ids) == set(expected_events(source))
    print(f"disk full under the checkpoint: job exited 1, restart loaded the rest;"
          f" {len(ids)} events exactly once")
    shutil.rmtree(checkpoint, ignore_errors=True)
