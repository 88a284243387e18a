"""The status page at / of the metrics port, loaded in a real browser (headless Chromium)
while the job streams: its figures are the database's, and nothing on it can run code."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

from pipeline.report.page import render_page
from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import start_job
from tests.test_metrics import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Figures(HTMLParser):
    """The text of every element with a data-figure attribute, and every script seen."""

    def __init__(self):
        super().__init__()
        self.figures: dict[str, str] = {}
        self.scripts = 0
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self._open = dict(attrs).get("data-figure") or self._open

    def handle_data(self, data):
        if self._open:
            self.figures[self._open] = self.figures.get(self._open, "") + data

    def handle_endtag(self, tag):
        self._open = None


def figures_of(html: str) -> Figures:
    parser = Figures()
    parser.feed(html)
    return parser


def browser(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile and its own network features off, so it
    talks to nothing but the page it is given."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
         "--virtual-time-budget=3000", *args],
        capture_output=True, text=True, timeout=120)


def status_of(value):
    return SimpleNamespace(
        healthy=True, problems=[], events_total=3, rows_read_total=4, rows_rejected_total=1,
        rows_duplicate_total=0, batches_total=1, backlog_files=0,
        oldest_waiting_file_age_s=None, latency_p50_s=0.1, latency_p99_s=0.2,
        throughput_rows_per_s=None, last_commit_at=value, recent_batches=[],
        rejected_by_reason={value: 1})


def test_every_value_on_the_page_is_escaped():
    hostile = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    html = render_page(status_of(hostile), {hostile: [(hostile, 3, hostile, hostile)]},
                       generated_at=hostile)
    parsed = figures_of(html)
    assert parsed.scripts == 0 and "<img" not in html
    assert parsed.figures["last_commit_at"] == hostile
    assert parsed.figures["events_total"] == "3"


def test_the_page_in_a_browser_shows_what_the_database_holds(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "4", "--seed", "31", "--null-user-rate", "0.3")
    (source / "events_zz_bad.csv").write_text(
        "event_id,user_id,product_id,event_type,price,event_time\n"
        "e1,u1,p1,view,<b>not a price</b>,2026-01-01T00:00:00Z\n")
    port = free_port()
    log = tmp_path / "job.log"
    job = start_job(database.job_env(), "--source", str(source), "--checkpoint",
                    str(tmp_path / "ck"), "--metrics-port", str(port), log_path=log)
    try:
        deadline = time.monotonic() + 240
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 5:
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/"
        dom = browser("--dump-dom", url, profile=tmp_path / "profile")
        assert dom.returncode == 0, dom.stderr[-2000:]
        shown = figures_of(dom.stdout).figures

        def one(sql: str) -> str:
            return str(int(database.query(sql)[0][0] or 0))

        assert shown["events_total"] == one("SELECT count(*) FROM events")
        assert shown["rows_rejected_total"] == one("SELECT count(*) FROM events_rejected")
        assert shown["rows_read_total"] == one("SELECT sum(rows_read) FROM ingest_files")
        assert shown["batches_total"] == one("SELECT count(*) FROM ingest_batches")
        assert shown["backlog_files"] == "0"
        assert shown["health"] == "pipeline healthy"
        assert "bad_price" in dom.stdout and "&lt;b&gt;not a price&lt;/b&gt;" in dom.stdout
        shot = tmp_path / "status-page.png"
        taken = browser(f"--screenshot={shot}", "--window-size=1280,900", url,
                        profile=tmp_path / "profile")
        assert taken.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", \
            taken.stderr[-2000:]
        print("screenshot of the status page:", shot)
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
