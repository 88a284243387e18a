"""Checkpoint generations: how the job keeps Spark's checkpoint from growing forever.

Spark's file-source log remembers every file a query ever read, and nothing in Spark ever
forgets one. So when the log holds more than --checkpoint-rotate-files files, the job stops
the query between batches and starts a new one on a fresh checkpoint folder: a new
generation. The old folder is removed only after the new query's first commit.

That is safe because the database, not the checkpoint, decides what is loaded: a new query
lists the files still in the source folder again, and the ledger skips those it loaded
before (`ingest_files`, keyed by file name). A kill -9 at any point of the switch leaves
either the old generation current (nothing happened) or the new one (it starts from the
files still there).

Layout under the --checkpoint folder (local checkpoints only):

    <root>/                  generation 0: Spark's own entries (offsets/, sources/, ...)
    <root>/generation        the current generation's number (absent: 0)
    <root>/generation-<n>/   generation n >= 1
    <root>/damaged-<n>-<time>/  generation n, set aside because Spark could not read it

A damaged checkpoint (a file left empty or cut short by a power cut) heals the same way: the
job goes on in a fresh generation, and the damaged one is kept for inspection.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from pathlib import Path

from pipeline.contract import CommitHooks
from pipeline.read.checkpoint_files import find_damage

log = logging.getLogger(__name__)

POINTER_FILE = "generation"
FOLDER_PREFIX = "generation-"
DAMAGED_PREFIX = "damaged-"
# What Spark writes at a checkpoint's top level: generation 0's part of the root.
SPARK_ENTRIES = ("metadata", ".metadata.crc", "offsets", "commits", "sources", "state")


def generation_folder(root: Path, generation: int) -> Path:
    """Where generation `generation` keeps Spark's checkpoint."""
    return root if generation == 0 else root / f"{FOLDER_PREFIX}{generation}"


class PointerDamaged(ValueError):
    """The `generation` file holds no number: left empty or garbled by a crash."""


def read_generation(root: Path) -> int:
    """The current generation (0 when the job never rotated this checkpoint)."""
    try:
        text = (root / POINTER_FILE).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    except UnicodeDecodeError:
        raise PointerDamaged(f"checkpoint file {root / POINTER_FILE} is not text (garbled)"
                             ) from None
    except OSError as e:
        raise ValueError(f"{root / POINTER_FILE} cannot be read ({e})") from None
    if not text:
        raise PointerDamaged(f"checkpoint file {root / POINTER_FILE} is empty")
    if not text.isdigit():
        raise PointerDamaged(f"checkpoint file {root / POINTER_FILE} holds {text[:40]!r},"
                             " not a generation number")
    return int(text)


def highest_generation(root: Path) -> int:
    """The highest generation with a folder under `root` (0 when there is none)."""
    numbers = [int(p.name[len(FOLDER_PREFIX):]) for p in root.glob(f"{FOLDER_PREFIX}*")
               if p.name[len(FOLDER_PREFIX):].isdigit()]
    return max(numbers, default=0)


def files_logged(checkpoint: Path) -> int:
    """How many files a checkpoint's file-source log holds.

    The log is `sources/0/<n>` per batch plus, every compactInterval-th entry,
    `<n>.compact`, which holds everything up to n; line 1 of each is a version.
    """
    folder = checkpoint / "sources" / "0"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    compacts = [int(n.split(".")[0]) for n in names if n.endswith(".compact")]
    latest = max(compacts, default=-1)
    counted = [f"{latest}.compact"] if latest >= 0 else []
    counted += [n for n in names if n.isdigit() and int(n) > latest]
    total = 0
    for name in counted:
        try:
            with open(folder / name, "rb") as f:
                total += max(0, sum(1 for line in f if line.strip()) - 1)
        except FileNotFoundError:
            pass  # compacted away while we counted
    return total


# A new generation lists again the loaded files still in the source folder (with
# --clean-source, those of the last batch); the ledger skips them. Up to this many, or a
# tenth of the limit, that is cheap (and never more than half the limit).
RELIST_MIN = 100


class RotationCheck:
    """When to rotate: the log holds more than `limit` files, and a new generation would
    list again few of them (the loaded files still in the source folder).

    Files that stay in the source folder stay in any checkpoint's log: rotating then would
    only re-read them. The job says so once and looks again when the log has grown by
    another tenth.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.due = False
        self.relisted = 0
        self._logged_at_start = 0
        self._taken_at_start = 0
        self._next_look = limit
        self._warned = False

    def started(self, logged: int, taken: int) -> None:
        """A query starts on a log of `logged` files; the writer has taken `taken` so far."""
        self._logged_at_start, self._taken_at_start = logged, taken
        self.due = False
        self._next_look = self.limit

    def logged(self, taken: int) -> int:
        """Files in the current log, given the files the writer has taken so far."""
        return self._logged_at_start + taken - self._taken_at_start

    def check(self, taken: int, relisted: Callable[[], int | None]) -> bool:
        """True when it is time to rotate (and stays so until the next `started`).

        `relisted`: how many loaded files a new generation would list again (None: cannot
        tell now, ask again later).
        """
        if not self.limit or self.due:
            return self.due
        logged = self.logged(taken)
        if logged <= self._next_look:
            return False
        again = relisted()
        # Below half the limit too: else each new generation, having listed them again,
        # would be past the limit at once and rotate for ever without reaching new files.
        if again is not None and again <= min(self.limit // 2,
                                               max(RELIST_MIN, self.limit // 10)):
            self.relisted, self.due = again, True
            return True
        if again is not None and not self._warned:
            log.warning("the checkpoint's file log holds %d files (limit %d) but it is not"
                        " rotated: %d loaded files are still in the source folder, and a new"
                        " checkpoint would list them all again. Use --clean-source archive or"
                        " delete, or move loaded files away", logged, self.limit, again)
            self._warned = True
        self._next_look = logged + max(1, self.limit // 10)
        return False


class CheckpointGenerations:
    """The current generation of a local checkpoint root, its switch and clean-up."""

    def __init__(self, root: Path, hooks: CommitHooks | None = None):
        self.root = root
        self._hooks = hooks
        self._pointer_damage: str | None = None
        try:
            self.current = read_generation(root)
        except PointerDamaged as e:
            # Which generation was current is lost: `damage` reports it and `heal` starts
            # past every generation there is.
            self._pointer_damage = str(e)
            self.current = highest_generation(root)

    @property
    def location(self) -> Path:
        """The folder Spark uses as the current query's checkpoint."""
        return generation_folder(self.root, self.current)

    def _hook(self, stage: str) -> None:
        if self._hooks is not None:
            self._hooks.at_rotation(stage, self.current)

    def switch(self) -> Path:
        """Make a fresh generation current; the old one stays until `retire_old`."""
        old, folder = self.current, self._new_generation()
        log.info("checkpoint rotated: generation %d in %s (generation %d is removed after"
                 " the first commit)", self.current, folder, old)
        self._hook("switched")
        return folder

    def _new_generation(self) -> Path:
        new = self.current + 1
        folder = generation_folder(self.root, new)
        if folder.exists():
            # Left by a switch killed before its pointer was written: no query ran on it.
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        _write_atomically(self.root / POINTER_FILE, f"{new}\n")
        self.current = new
        self._pointer_damage = None
        return folder

    def damage(self) -> str | None:
        """What Spark (or the job) could not read in the current generation, or None."""
        if self._pointer_damage is not None:
            return self._pointer_damage
        found = find_damage(self.location)
        return None if found is None else str(found)

    def heal(self, damage: str) -> Path:
        """Go on in a fresh generation after `damage`; the damaged one is set aside.

        The pointer moves first: killed before the damaged generation is set aside, it is
        then only an old generation, removed after the first commit like any other.
        """
        pointer_damaged = self._pointer_damage is not None
        damaged, folder = self.current, self._new_generation()
        if pointer_damaged:
            # No generation is known to be damaged: the earlier ones go as after a rotation.
            kept = "the earlier generations are removed after its first commit"
        else:
            kept = f"the damaged one is kept in {self._set_aside(damaged)} for inspection"
        log.warning("%s: going on in a fresh checkpoint generation %d in %s (files loaded"
                    " before are skipped by the ledger); %s", damage, self.current, folder,
                    kept)
        return folder

    def _set_aside(self, generation: int) -> Path:
        """Move a damaged generation where retire_old never looks."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.root / f"{DAMAGED_PREFIX}{generation}-{stamp}"
        suffix = 1
        while aside.exists():
            aside = self.root / f"{DAMAGED_PREFIX}{generation}-{stamp}-{suffix}"
            suffix += 1
        if generation > 0:
            os.replace(generation_folder(self.root, generation), aside)
            return aside
        aside.mkdir()
        for name in SPARK_ENTRIES:  # generation 0 shares the root with the others
            if (self.root / name).exists():
                os.replace(self.root / name, aside / name)
        return aside

    def old_generations(self) -> list[Path]:
        """What is left of earlier generations (removed once the current one commits)."""
        old = [p for p in self.root.glob(f"{FOLDER_PREFIX}*")
               if p.name != f"{FOLDER_PREFIX}{self.current}"]
        if self.current > 0:
            old += [self.root / n for n in SPARK_ENTRIES if (self.root / n).exists()]
        return sorted(old)

    def current_has_committed(self) -> bool:
        commits = self.location / "commits"
        return commits.is_dir() and any(n.isdigit() for n in os.listdir(commits))

    def retire_old(self) -> int:
        """Remove earlier generations once the current one has a commit; entries removed."""
        old = self.old_generations()
        if not old or not self.current_has_committed():
            return 0
        for i, path in enumerate(old):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as e:
                # Only space is lost; the job goes on and tries again later.
                log.warning("could not remove %s of an earlier checkpoint generation: %s",
                            path, e)
                return i
            if i == 0:
                self._hook("retiring")
        log.info("removed %d entr%s of earlier checkpoint generations", len(old),
                 "y" if len(old) == 1 else "ies")
        return len(old)


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a crash leaves the old or the new content, whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
