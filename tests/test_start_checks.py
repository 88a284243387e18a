"""Settings and options a running job would trip over later are refused at start: exit 2,
one line saying what to fix, before Spark or the database is touched."""

from __future__ import annotations

import pytest

from pipeline.errors import JobError
from pipeline.job.cli import JAVA_INT_MAX
from pipeline.job.cli import parse_args
from pipeline.job.options import JobOptions
from pipeline.job.options import check_paths
from tests.support.jobs import run_job


def test_the_real_job_refuses_a_misspelled_time_zone_at_start(tmp_path, database):
    source = tmp_path / "in"
    source.mkdir()
    # A file with a time without an offset: the case a misspelled zone used to fail on.
    (source / "events_1.csv").write_text(
        "event_id,user_id,product_id,event_type,price,event_time\n"
        "e1,u1,p1,view,1.00,2026-01-01 10:00:00\n")
    done = run_job(database.job_env(EVENT_TIME_ZONE="Europe/Berln"), "--source", str(source),
                   "--checkpoint", str(tmp_path / "ck"), "--once", timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    about_zone = [line for line in done.stderr.splitlines() if "EVENT_TIME_ZONE" in line]
    assert about_zone == ["  - EVENT_TIME_ZONE='Europe/Berln' is not a time zone this machine"
                          " knows: use an IANA name such as Europe/Berlin or America/New_York"
                          " (case matters), UTC, or Etc/GMT-2 for a fixed UTC+2 (the Etc/"
                          " sign is inverted)"], done.stderr
    assert not (tmp_path / "ck").exists()  # refused before anything started
    assert database.query("SELECT COUNT(*) FROM ingest_files") == [(0,)]


@pytest.mark.parametrize("args, message", [
    (["--trigger-interval", "nan"], "--trigger-interval must be 0 or 0.001"),
    (["--trigger-interval", "inf"], "--trigger-interval must be 0 or 0.001"),
    (["--trigger-interval", "0.00001"], "--trigger-interval must be 0 or 0.001"),
    (["--trigger-interval", "-1"], "--trigger-interval must be 0 or 0.001"),
    (["--max-files-per-trigger", str(JAVA_INT_MAX + 1)], "--max-files-per-trigger must be"),
    (["--max-files-per-trigger", "0"], "--max-files-per-trigger must be"),
    (["--catch-up-files", str(JAVA_INT_MAX + 1)], "--catch-up-files must be at most"),
])
def test_options_spark_would_refuse_later_are_refused_at_start(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_the_largest_values_spark_takes_pass():
    args = parse_args(["--max-files-per-trigger", str(JAVA_INT_MAX), "--catch-up-files",
                       str(JAVA_INT_MAX), "--trigger-interval", "0.001"])
    assert (args.max_files_per_trigger, args.trigger_interval) == (JAVA_INT_MAX, 0.001)


def test_an_archive_that_cannot_be_written_is_refused_at_start(tmp_path):
    source, in_the_way = tmp_path / "in", tmp_path / "a-file"
    source.mkdir()
    in_the_way.write_text("not a folder")  # fails as root too, unlike a mode
    options = JobOptions(str(source), str(tmp_path / "ck"), clean_source="archive",
                         archive_dir=str(in_the_way / "archive"))
    with pytest.raises(JobError, match="archive folder .* is not writable"):
        check_paths(options)


def test_an_archive_on_another_file_system_is_refused_at_start(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    options = JobOptions(str(source), str(tmp_path / "ck"), clean_source="archive",
                         archive_dir="hdfs://namenode:8020/archive")
    with pytest.raises(JobError, match="must be on the file system of the source"):
        check_paths(options)
    options = JobOptions(str(source), str(tmp_path / "ck"), clean_source="archive",
                         archive_dir=f"file://{tmp_path}/archive")
    assert check_paths(options).archive_dir == str(tmp_path / "archive")
