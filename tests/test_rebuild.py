"""Rebuild: the archive replayed into recreated tables gives back what the first load wrote,
and a rebuild killed part way finishes on a second run without doubling anything."""

from __future__ import annotations

import random
import subprocess
import time

import mysql.connector
import pytest

from pipeline.config import MySQLSettings
from pipeline.ops.setup_db import setup_database
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job

TABLES = ("events", "events_rejected", "ingest_batches", "ingest_files")


def snapshot(database) -> dict[str, list]:
    """What a load leaves behind, without the ids and times of the run that wrote it."""
    return {
        "events": database.query("SELECT event_id, user_id, product_id, event_type, price,"
                                 " event_time FROM events ORDER BY event_id"),
        "rejected": database.query("SELECT source_file, line_number, reason, detail, raw_line"
                                   " FROM events_rejected ORDER BY source_file, line_number"),
        "files": database.query("SELECT file_key, source_file, file_modified_at, rows_read,"
                                "rows_written, rows_rejected, rows_duplicate, status,"
                                " status_reason, file_bytes, file_lines, file_sha256"
                                " FROM ingest_files ORDER BY source_file"),
    }


def recreate_tables(mysql_server, database) -> None:
    """Drop the pipeline's tables and make them again, as an operator would after a loss."""
    conn = mysql.connector.connect(host=mysql_server.host, port=mysql_server.port,
                                   user=mysql_server.user, password=mysql_server.password,
                                   database=database.name, autocommit=True)
    try:
        cur = conn.cursor()
        for table in TABLES:
            cur.execute(f"DROP TABLE {table}")
    finally:
        conn.close()
    setup_database(MySQLSettings(host=mysql_server.host, port=mysql_server.port,
                                 database=database.name, user=database.user,
                                 password=database.password, ssl_mode="DISABLED", ssl_ca=None),
                   mysql_server.user, mysql_server.password,
                   report_user=database.report_user, report_password=database.report_password)
    assert database.query("SELECT count(*) FROM ingest_files") == [(0,)]


def rebuild_command(tmp_path, *args: str) -> list[str]:
    """The archive, and the source folder for the files Spark had not archived yet."""
    return [PYTHON, "-m", "pipeline.ops.rebuild", "--archive", str(tmp_path / "archive"),
            "--from", str(tmp_path / "data"), "--no-progress", *args]


def first_load(tmp_path, database, seed: int) -> None:
    source, archive = tmp_path / "data", tmp_path / "archive"
    run_generator(source, "--files", "12", "--seed", str(seed), "--events-per-file", "8",
                  "--null-user-rate", "0.2")
    files = sorted(source.glob("events_*.csv"))
    # An event repeated in a later file (the first one loaded wins) and a bad line.
    repeated = files[0].read_text().splitlines()[1]
    with files[-1].open("a") as f:
        f.write(f"{repeated}\nbad,line\n")
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--clean-source", "archive",
                   "--archive-dir", str(archive), timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # Spark archives a batch's files when it plans the next one: the newest may stay.
    assert len(list(archive.rglob("events_*.csv"))) >= 10


def test_a_rebuild_from_the_archive_gives_back_the_first_load(tmp_path, database,
                                                              mysql_server):
    first_load(tmp_path, database, seed=31)
    before = snapshot(database)
    assert len(before["files"]) == 12 and len(before["rejected"]) > 1
    assert sum(r[6] for r in before["files"]) == 1  # the repeated event

    recreate_tables(mysql_server, database)
    rebuilt = subprocess.run(rebuild_command(tmp_path), cwd=ROOT, env=database.job_env(),
                             capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    assert snapshot(database) == before


@pytest.mark.slow
def test_a_killed_rebuild_goes_on_where_it_stopped(tmp_path, database, mysql_server):
    seed = random.randrange(10**6)
    print(f"seed {seed}")
    first_load(tmp_path, database, seed=seed)
    before = snapshot(database)
    recreate_tables(mysql_server, database)

    with open(tmp_path / "rebuild.log", "wb") as log:
        proc = subprocess.Popen(rebuild_command(tmp_path, "--files-per-batch", "1"), cwd=ROOT,
                                env=database.job_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 3:
            assert proc.poll() is None, (tmp_path / "rebuild.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        kill_group(proc)  # kill -9, wherever it is
    again = subprocess.run(rebuild_command(tmp_path), cwd=ROOT, env=database.job_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "loaded before" in again.stderr
    assert snapshot(database) == before


def test_replay_order_is_the_streams_and_an_s3_archive_goes_before_the_source():
    """Pure: by modification time; a name given twice once (its oldest copy); files of an
    archive dated by the copy first, in archive order, since all of them were loaded before
    anything still in the source."""
    from datetime import UTC
    from datetime import datetime

    from pipeline.ops.rebuild import Replay
    from pipeline.ops.rebuild import batches_of
    from pipeline.ops.rebuild import oldest_first
    from pipeline.read.checkpoint import SourceFile

    def at(second: int) -> datetime:
        return datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)

    def local(name: str, second: int, size: int = 10) -> Replay:
        return Replay(SourceFile(f"file:///d/{name}", at(second)), size)

    def archived(name: str, second: int) -> Replay:
        return Replay(SourceFile(f"s3a://b/archive/in/{name}", at(second),
                                 recorded_as=f"s3a://b/in/{name}"), 10, copied=True)

    order = oldest_first([local("c", 3), local("a", 5), local("b", 1), local("a", 2)])
    assert [(r.file.name, r.file.modified_at.second) for r in order] == [
        ("file:/d/b", 1), ("file:/d/a", 2), ("file:/d/c", 3)]

    source = Replay(SourceFile("s3a://b/in/last", at(1)), 10)
    order = oldest_first([source, archived("second", 40), archived("first", 30)])
    assert [r.file.name for r in order] == ["s3a://b/in/first", "s3a://b/in/second",
                                            "s3a://b/in/last"]

    files = [local(str(i), i, size) for i, size in enumerate([5, 5, 50, 5, 5, 5])]
    assert [[f.name[-1] for f in batch] for batch in batches_of(files, 2, 20)] == [
        ["0", "1"], ["2"], ["3", "4"], ["5"]]
