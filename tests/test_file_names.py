"""Every name in the source folder ends recorded: a name that is not UTF-8 (Spark never lists
it) quarantined as `bad_file_name` with its bytes escaped, names holding control characters
loaded under their own name; and no name can forge a line of the job's log."""

from __future__ import annotations

import json
import os
import subprocess
from hashlib import sha256

import pytest

from pipeline.contract import FilePayload
from pipeline.contract import is_utf8_name
from pipeline.contract import printable_name
from pipeline.contract import recorded_name
from pipeline.errors import JobError
from pipeline.job.options import JobOptions
from pipeline.job.options import check_paths
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT
from tests.support.jobs import run_job

HEADER = b"event_id,user_id,product_id,event_type,price,event_time\n"
# A line in the job's own text format (pipeline/logs.py), as a name would forge it.
FORGED = (b"2026-12-07 01:02:03.000 INFO pipeline.job.batch: batch 42: 1 file(s), 21 rows read"
          b" -> 21 written")
# Spark lists these and the driver reads them: loaded, recorded under their own name.
LISTED = {
    b"events_ok.csv": "ok",
    b"events_line\n" + FORGED + b".csv": "newline",
    b"events_cr\r" + FORGED + b".csv": "cr",
    b"events_esc\x1b[31mred.csv": "esc",
    b"events_tab\t.csv": "tab",
    b"events_c1\xc2\x85.csv": "c1",
}
LATIN1 = b"events_caf\xe9.csv"  # Latin-1 e-acute: not UTF-8
NOT_A_SOURCE = b"notes\n" + FORGED + b".txt"


def write_folder(source) -> None:
    folder = os.fsencode(source)
    for name, tag in [*LISTED.items(), (LATIN1, "latin1"), (NOT_A_SOURCE, "notes")]:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(HEADER + f"id-{tag},u1,p1,view,1.00,2026-01-01T00:00:00Z\n".encode())


def assert_no_forged_line(output: str) -> None:
    assert "\x1b" not in output and "\x85" not in output
    lines = output.splitlines()  # splits at \r, \x85, \u2028 too
    assert not [line for line in lines if line.startswith(FORGED[:19].decode())], output[-3000:]
    # The name that tried is in its own line, escaped.
    assert f"notes\\x0a{FORGED.decode()}.txt: only files named events_*.csv are read" \
        in output, output[-3000:]


def test_every_name_is_recorded_and_none_forges_a_log_line(tmp_path, database):
    source = tmp_path / "in"
    source.mkdir()
    write_folder(source)
    args = ["--source", str(source), "--checkpoint", str(tmp_path / "ck"), "--once"]
    for run in (1, 2):  # the second start must neither forge a line nor record anything twice
        done = run_job(database.job_env(), *args, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert_no_forged_line(output)
        assert f"quarantined {source}/events_caf\\xe9.csv: its name is not UTF-8" in output

        files = {name: (status, reason, read) for name, status, reason, read in database.query(
            "SELECT source_file, status, status_reason, rows_read FROM ingest_files")}
        expected = {f"file:{source}/{name.decode()}": ("loaded", None, 1) for name in LISTED}
        expected[f"file:{source}/events_caf\\xe9.csv"] = ("quarantined", "bad_file_name", 0)
        assert files == expected, (run, files)
        assert sorted(r[0] for r in database.query("SELECT event_id FROM events")) == \
            sorted(f"id-{tag}" for tag in LISTED.values())

    status = subprocess.run([PYTHON, "-m", "pipeline.ops.status", "--json", "--source",
                             str(source), "--checkpoint", str(tmp_path / "ck")], cwd=ROOT,
                            env=database.job_env(), capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)["backlog_files"] == 0, status.stdout + status.stderr


def test_a_file_named_as_the_escape_of_another_is_not_taken_for_it(tmp_path, database):
    """The Latin-1 file is recorded as `events_caf\\xe9.csv`; a file really named so (a
    backslash, x, e, 9) is another file and is loaded."""
    source = tmp_path / "in"
    source.mkdir()
    folder = os.fsencode(source)
    for name, tag in [(LATIN1, "latin1"), (b"events_caf\\xe9.csv", "backslash")]:
        with open(os.path.join(folder, name), "wb") as f:
            f.write(HEADER + f"id-{tag},u1,p1,view,1.00,2026-01-01T00:00:00Z\n".encode())
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rows = database.query("SELECT source_file, status, status_reason FROM ingest_files")
    assert sorted(rows) == [(f"file:{source}/events_caf\\xe9.csv", "loaded", None),
                            (f"file:{source}/events_caf\\xe9.csv", "quarantined",
                             "bad_file_name")]
    assert [r[0] for r in database.query("SELECT event_id FROM events")] == ["id-backslash"]


# -- the pure parts ---------------------------------------------------------------------------

def test_printable_name_escapes_what_could_break_a_line_and_keeps_the_rest():
    cases = {
        "events_a\nb.csv": "events_a\\x0ab.csv",
        "a\rb\tc\x1b[31m\x7f\x85\x9f": "a\\x0db\\x09c\\x1b[31m\\x7f\\x85\\x9f",
        "x\u2028y\u2029z\u202ew\u2066": "x\\u2028y\\u2029z\\u202ew\\u2066",
        os.fsdecode(b"caf\xe9 \xff"): "caf\\xe9 \\xff",
        "ok é 😀 \\x0a ? # % \" '": "ok é 😀 \\x0a ? # % \" '",
    }
    for name, shown in cases.items():
        assert printable_name(name) == shown, name
        assert printable_name(shown) == shown  # printing twice changes nothing
        assert shown.isprintable()


def test_a_name_that_is_not_utf8_is_recorded_escaped_and_keyed_by_its_bytes():
    raw = b"file:/d/events_caf\xe9.csv"
    name = os.fsdecode(raw)
    assert not is_utf8_name(name) and is_utf8_name("file:/d/events_a\nb.csv")
    assert recorded_name(name) == "file:/d/events_caf\\xe9.csv"
    assert recorded_name("file:/d/events_a\nb.csv") == "file:/d/events_a\nb.csv"
    quarantined = FilePayload(recorded_name(name), None, name_bytes=raw)
    lookalike = FilePayload("file:/d/events_caf\\xe9.csv", None)
    assert quarantined.key == sha256(raw).hexdigest() != lookalike.key


def test_folders_whose_names_are_not_utf8_are_refused_at_start(tmp_path):
    folder = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"caf\xe9"))
    os.mkdir(folder)
    with pytest.raises(JobError, match=r"--source .*caf\\xe9 is not UTF-8"):
        check_paths(JobOptions(folder, str(tmp_path / "ck")))
    with pytest.raises(JobError, match=r"--checkpoint .*caf\\xe9 is not UTF-8"):
        check_paths(JobOptions(str(tmp_path), folder))


def test_a_rebuild_replays_no_name_spark_would_not_list(tmp_path):
    from pipeline.ops.rebuild import replay_files

    write_folder(tmp_path)
    names = sorted(r.file.name for r in replay_files(tmp_path, archive=False))
    assert names == sorted(f"file:{tmp_path}/{name.decode()}" for name in LISTED)


# Hadoop reads a path holding these as a glob: `?` is any one character, `[` opens a class.
GLOB_NAMES = ["a?b", "a#b", "a[1]", "a*", "a{b}", "a\\b", "plain"]


def test_names_with_glob_characters_are_each_read_once_by_spark_tasks(tmp_path, database):
    """The Spark-task route (`--driver-batch-max-bytes 0`) with every file in one batch:
    each file's rows counted once, checked against the rows in its own bytes."""
    source = tmp_path / "in"
    source.mkdir()
    written = {}
    for i, name in enumerate(GLOB_NAMES):
        body = HEADER + b"".join(f"g{i}-{n},u{n},p1,view,1.00,2026-01-01T00:00:00Z\n".encode()
                                 for n in range(5))
        (source / f"events_{name}.csv").write_bytes(body)
        written[f"events_{name}.csv"] = body.count(b"\n") - 1
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--driver-batch-max-bytes", "0",
                   "--max-files-per-trigger", str(len(GLOB_NAMES)))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "(spark)" in done.stdout + done.stderr, done.stderr[-4000:]
    recorded = {name.rsplit("/", 1)[-1]: (read, rejected) for name, read, rejected in
                database.query("SELECT source_file, rows_read, rows_rejected FROM ingest_files")}
    assert recorded == {name: (rows, 0) for name, rows in written.items()}
    assert database.query("SELECT count(*) FROM events") == [(sum(written.values()),)]
