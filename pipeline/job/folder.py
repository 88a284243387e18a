"""What the supervisor watches besides the query: the source folder (backlog, entries the
job will never read) and the heartbeat that tells `pipeline.ops.status` the job is alive."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pipeline.contract import HEARTBEAT_FILE
from pipeline.contract import SOURCE_GLOB
from pipeline.contract import is_utf8_name
from pipeline.contract import ledger_key
from pipeline.contract import ledger_name
from pipeline.contract import printable_name
from pipeline.contract import recorded_name
from pipeline.errors import PipelineError
from pipeline.job.options import JobOptions
from pipeline.job.options import local_path

log = logging.getLogger(__name__)


def spark_spelling(uri: str) -> Path | None:
    """The local source folder as Spark names its files: made absolute against the working
    directory, links not resolved (`local_path` resolves them); None when not local."""
    local = local_path(uri)
    if local is None:
        return None
    parsed = urlparse(uri)
    return Path(os.path.abspath(os.path.expanduser(parsed.path if parsed.scheme else uri)))


@dataclass(frozen=True)
class FolderLook:
    """The source folder compared with `ingest_files` at one moment."""

    waiting: int  # entries named like a source file that are not in ingest_files
    oldest_wait_s: float  # how long the oldest of them has waited (0: none)
    loaded: int  # entries still in the folder that ingest_files holds


class SourceFolder:
    """What waits in the source folder: every entry named like a source file that
    `ingest_files` does not hold, whatever its modification time.

    The database is asked only about names it was not asked about before: the job's own
    commits (`committed`) say which of those it loads since. So a check costs a listing of
    the folder and, for the names that appeared since the last one, an indexed query;
    memory holds the names in the folder, not the history. `forget` asks again about the
    waiting ones (something else may have loaded them: a rebuild, another job).
    """

    def __init__(self, folder: Path, keys_loaded: Callable[[list[str], bool], set[str]],
                 started_at: float):
        self._folder = folder
        self._keys_loaded = keys_loaded
        self._started_at = started_at
        self._lock = threading.Lock()
        self._loaded: set[str] = set()
        self._waiting: set[str] = set()

    def committed(self, names: list[str]) -> None:
        """Files a commit recorded in ingest_files (loaded, missing or quarantined)."""
        keys = {ledger_key(n) for n in names}
        with self._lock:
            self._loaded |= keys
            self._waiting -= keys

    def forget(self) -> None:
        with self._lock:
            self._waiting.clear()

    def look(self, wait: bool = False) -> FolderLook:
        """Raises what `keys_loaded(keys, wait)` raises (the database busy or down): ask
        again later."""
        entries = _entries(self._folder)
        with self._lock:
            unknown = [k for k in entries if k not in self._loaded and k not in self._waiting]
        found = self._keys_loaded(unknown, wait) if unknown else set()
        with self._lock:
            self._loaded = (self._loaded | found) & entries.keys()
            self._waiting = (self._waiting | set(unknown)) - self._loaded
            self._waiting &= entries.keys()
            waiting = [mtime for k, mtime in entries.items() if k not in self._loaded]
            loaded = len(self._loaded)
        now = time.time()
        # A file's wait is counted from its modification time, but never from before this
        # process started (as the last-commit gauge) nor from the future.
        waits = [now - min(max(mtime, self._started_at), now) for mtime in waiting]
        return FolderLook(len(waiting), max(waits, default=0.0), loaded)


def _entries(folder: Path) -> dict[str, float]:
    """key -> modification time of every entry named like a source file, links not
    followed: a directory, link or FIFO waits too, until the job quarantines it."""
    found = {}
    for path in folder.glob(SOURCE_GLOB):
        try:
            # A name that is not UTF-8 never waits: Spark cannot list it, and it is recorded
            # as quarantined (IgnoredFileReporter).
            if is_utf8_name(path.name):
                found[ledger_key(ledger_name(path))] = path.lstat().st_mtime
        except FileNotFoundError:
            pass  # archived or deleted while we looked
    return found


class IgnoredFileReporter:
    """Says once per name which entries of the source folder the job will never read.

    A directory or a symbolic link to nothing named like a source file is one Spark
    never lists, and so is a file whose name is not UTF-8 (the JVM cannot spell it):
    each is recorded as quarantined (through `record`), so it shows in the tables, not
    only in a log. Names are logged escaped.
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
                elif path.is_symlink() and not path.exists():
                    # Spark lists no link to nothing: left alone, it would wait for ever.
                    refused = ("symlink", "a symbolic link to nothing: never followed, never read")
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
