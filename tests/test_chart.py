"""The chart tool on an empty window and on an output it cannot write: one clear line, no
traceback."""

from __future__ import annotations

import subprocess
from datetime import datetime
from datetime import timedelta

from pipeline.ops.chart import draw
from pipeline.ops.chart import throughput
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_throughput_has_one_figure_per_batch():
    start = datetime(2026, 1, 1)
    batches = [(start, 0.1, 10, 0), (start + timedelta(seconds=2), 0.1, 30, 1)]
    assert throughput([]) == []
    assert throughput(batches[:1]) == [0.0]
    assert throughput(batches) == [0.0, 15.0]


def test_an_empty_window_is_drawn(tmp_path):
    out = tmp_path / "empty.png"
    draw([], out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def chart(database, *args):
    return subprocess.run([PYTHON, "-m", "pipeline.ops.chart", *args], cwd=ROOT,
                          env=database.job_env(), capture_output=True, text=True, timeout=120)


def test_chart_of_a_database_with_no_batches(tmp_path, database):
    out = tmp_path / "chart.png"
    result = chart(database, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "0 batches" in result.stdout
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_chart_into_a_missing_folder_says_so(tmp_path, database):
    result = chart(database, "--output", str(tmp_path / "no" / "such" / "chart.png"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
