"""Input data: generated folders, what they should produce, and the live writer and poller."""

from __future__ import annotations

import csv
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from dataclasses import field
from datetime import UTC
from datetime import datetime
from pathlib import Path

from bench.jobs import PYTHON
from bench.jobs import ROOT
from pipeline.contract import EVENT_FIELDS
from pipeline.generate.events import EventFactory
from pipeline.generate.events import file_name_for


@dataclass(frozen=True)
class Expected:
    """What a folder holds: every data row, and the ids a correct job must store."""

    files: list[Path]
    input_rows: int
    valid_ids: frozenset[str]


def generate(folder: Path, files: int, events_per_file: int, seed: int) -> Expected:
    """Write `files` files with the project's own generator, as fast as it goes."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON, str(ROOT / "data_generator.py"), "--output-dir", str(folder),
                    "--interval", "0", "--files", str(files), "--events-per-file",
                    str(events_per_file), "--seed", str(seed), "--quiet"],
                   check=True, capture_output=True, timeout=600)
    return expected(folder)


def expected(folder: Path, archive: Path | None = None) -> Expected:
    """Rows with a non-empty user_id are the ones the plain design and our job keep.

    `archive`: where --clean-source archive moved files (under their original paths)."""
    paths = sorted([*folder.glob("events_*.csv"),
                    *(archive.rglob("events_*.csv") if archive else ())])
    rows, ids = 0, set()
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                rows += 1
                if row["user_id"].strip():
                    ids.add(row["event_id"])
    return Expected(paths, rows, frozenset(ids))


@dataclass
class LiveFile:
    """One file of the live scenario: when it appeared and when its rows could be read."""

    name: str
    ids: list[str]
    renamed_at: float
    visible_at: float | None = None

    @property
    def latency_s(self) -> float | None:
        return None if self.visible_at is None else self.visible_at - self.renamed_at


class LiveWriter:
    """Writes 21-row files the way the generator does: dot-temp name, fsync, rename.

    The rename time is taken right after os.rename returns: the moment the job may see it.
    """

    def __init__(self, folder: Path, seed: int, events_per_file: int = 21):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.events_per_file = events_per_file
        self._factory = EventFactory(seed=seed, interval=1.0)
        self._seq = 0
        self.files: list[LiveFile] = []

    def write_one(self) -> LiveFile:
        self._seq += 1
        now = datetime.now(UTC)
        rows = self._factory.make_events(self.events_per_file, self._seq - 1, now)
        name = file_name_for(now, self._seq, "bench")
        tmp = self.folder / f".{name}.tmp"
        with open(tmp, "x", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EVENT_FIELDS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.folder / name)
        live = LiveFile(name, [r["event_id"] for r in rows if r["user_id"]], time.time())
        self.files.append(live)
        return live


class VisibilityPoller:
    """Own connection, every ~20 ms: which written files have rows in `events` by now."""

    def __init__(self, connect, writer: LiveWriter, period_s: float = 0.02):
        self._connect = connect
        self._writer = writer
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility-poller", daemon=True)
        self.error: Exception | None = None

    def __enter__(self) -> VisibilityPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def pending(self) -> list[LiveFile]:
        return [f for f in list(self._writer.files) if f.visible_at is None]

    def _run(self) -> None:
        try:
            conn = self._connect()
        except Exception as e:  # noqa: BLE001 - reported by the scenario
            self.error = e
            return
        try:
            cur = conn.cursor()
            while not self._stop.is_set():
                waiting = {i: f for f in self.pending() for i in f.ids}
                if waiting:
                    marks = ", ".join(["%s"] * len(waiting))
                    cur.execute(f"SELECT event_id FROM events WHERE event_id IN ({marks})",
                                tuple(waiting))
                    seen_at = time.time()
                    for (event_id,) in cur.fetchall():
                        f = waiting[event_id]
                        if f.visible_at is None:
                            f.visible_at = seen_at
                self._stop.wait(self._period)
        except Exception as e:  # noqa: BLE001
            self.error = e
        finally:
            conn.close()

    def wait_visible(self, files: list[LiveFile], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if all(f.visible_at is not None for f in files):
                return True
            time.sleep(0.05)
        return False


@dataclass
class Percentiles:
    values: list[float] = field(default_factory=list)

    def pct(self, p: float) -> float | None:
        """Nearest-rank percentile (with 30 samples, p99 is the largest one)."""
        if not self.values:
            return None
        ordered = sorted(self.values)
        rank = max(1, -(-len(ordered) * p // 100))
        return ordered[int(rank) - 1]
