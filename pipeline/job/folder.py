"""What the supervisor watches besides the query: the source folder (backlog, entries the
job will never read) and the heartbeat that tells `pipeline.ops.status` the job is alive."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from pipeline.contract import HEARTBEAT_FILE
from pipeline.contract import SOURCE_GLOB
from pipeline.contract import is_utf8_name
from pipeline.contract import printable_name
from pipeline.contract import recorded_name
from pipeline.errors import PipelineError
from pipeline.job.options import JobOptions
from pipeline.job.options import local_path

log = logging.getLogger(__name__)


def files_newer_than(folder: Path, newest: datetime | None) -> list[Path]:
    """The regular source files in `folder` modified after `newest` (all when None).

    Directories, links and the like named like a source file are quarantined once, never
    loaded: they are not waiting.
    """
    # Spark (and so the ledger) knows modification times in whole milliseconds.
    limit_ms = round(newest.timestamp() * 1000) if newest else -1
    found = []
    for path in folder.glob(SOURCE_GLOB):
        try:
            status = path.lstat()
            # A name that is not UTF-8 never waits: Spark cannot list it, and it is recorded
            # as quarantined (IgnoredFileReporter).
            if stat.S_ISREG(status.st_mode) and status.st_mtime_ns // 1_000_000 > limit_ms \
                    and is_utf8_name(path.name):
                found.append(path)
        except FileNotFoundError:
            pass  # archived or deleted while we looked
    return found


def backlog_of(folder: Path, newest: datetime | None) -> tuple[int, float]:
    """(files waiting, age in seconds of the oldest of them; 0 when none)."""
    now = time.time()
    ages = []
    for path in files_newer_than(folder, newest):
        try:
            ages.append(now - path.stat().st_mtime)
        except FileNotFoundError:
            pass
    return len(ages), max(ages, default=0.0)


class IgnoredFileReporter:
    """Says once per name which entries of the source folder the job will never read.

    A directory named like a source file is one Spark never lists, and so is a file whose
    name is not UTF-8 (the JVM cannot spell it): each is recorded as quarantined (through
    `record`), so it shows in the tables, not only in a log. Names are logged escaped.
    """

    def __init__(self, options: JobOptions,
                 record: Callable[[str, str, str, bytes | None], None]):
        self._folder = local_path(options.source)
        self._record = record
        self._seen: set[str] = set()

    def report(self) -> None:
        if self._folder is None or not self._folder.is_dir():
            return
        for path in self._folder.iterdir():
            name = path.name
            if name in self._seen or name.startswith((".", "_")):
                continue
            shown = printable_name(str(path))
            if fnmatch.fnmatch(name, SOURCE_GLOB):
                if path.is_dir():
                    refused = ("not_a_regular_file", "a directory: only regular files are read")
                elif not is_utf8_name(name):
                    refused = ("bad_file_name", "its name is not UTF-8, so Spark never lists"
                               " it: rename it to UTF-8 (see docs/bad-input.md)")
                else:
                    continue  # Spark lists it: a batch records it
                if not self._quarantine(path, *refused):
                    continue
                log.warning("quarantined %s: %s", shown, refused[1])
                self._seen.add(name)
                continue
            if not path.is_dir():
                log.warning("ignoring %s: only files named %s are read", shown, SOURCE_GLOB)
            self._seen.add(name)

    def _quarantine(self, path: Path, reason: str, detail: str) -> bool:
        """Record `path` as quarantined; False when the database cannot take it yet."""
        name = "file:" + str(path)
        name_bytes = None if is_utf8_name(name) else os.fsencode(name)
        try:
            self._record(recorded_name(name), reason, detail, name_bytes)
            return True
        except PipelineError as e:
            log.warning("could not record %s yet: %s", printable_name(str(path)), e)
            return False


def write_heartbeat(options: JobOptions, started_at: float) -> None:
    """Tell `pipeline.ops.status` the job is alive (local checkpoints only)."""
    checkpoint = local_path(options.checkpoint)
    if checkpoint is None:
        return
    beat = {"pid": os.getpid(), "started_at": started_at, "updated_at": time.time(),
            "source": options.source}
    tmp = checkpoint / f".{HEARTBEAT_FILE}.tmp"
    tmp.write_text(json.dumps(beat))
    tmp.replace(checkpoint / HEARTBEAT_FILE)
