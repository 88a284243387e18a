"""Log lines carry the date, the time to the millisecond and the logger's name; --log-format
json gives one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime

from pipeline.logs import configure_logging
from tests.support.jobs import run_generator
from tests.support.jobs import run_job

TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARNING|ERROR) "
                       r"[\w.]+: .*")


def logged(log_format: str, emit) -> str:
    configure_logging(log_format)
    stream = io.StringIO()
    logging.getLogger().handlers[0].setStream(stream)
    try:
        emit(logging.getLogger("pipeline.job.batch"))
    finally:
        logging.basicConfig(force=True)
    return stream.getvalue()


def test_text_lines_have_date_time_level_and_logger():
    text = logged("text", lambda log: log.warning("batch %d: %s", 7, "slow"))
    assert TEXT_LINE.fullmatch(text.strip())
    assert text.strip().endswith("WARNING pipeline.job.batch: batch 7: slow")


def test_json_lines_are_objects_with_time_level_logger_message():
    def emit(log):
        log.info("one\nline")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")

    first, second = (json.loads(line) for line in logged("json", emit).splitlines())
    assert first["message"] == "one\nline" and first["level"] == "INFO"
    assert first["logger"] == "pipeline.job.batch"
    assert datetime.fromisoformat(first["time"]).utcoffset() is not None
    assert second["level"] == "ERROR" and "ValueError: boom" in second["exception"]


def test_the_job_logs_json_when_asked(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "1", "--seed", "5")
    done = run_job(database.job_env(), "--source", str(source), "--checkpoint",
                   str(tmp_path / "ck"), "--once", "--log-format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    ours = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in ours]
    assert any(m.startswith("connected to") for m in messages), done.stderr[-3000:]
    assert any(m.startswith("source drained: 1 batch") for m in messages)
    assert all(entry["logger"].startswith(("pipeline", "root")) for entry in ours)
