"""Is a local checkpoint readable? The same checks Spark's readers make, done first, so a
damaged file is named (Spark often says only `Incomplete log file`) and recognised as damage
rather than taken for any other error.

Spark writes each log file as a version line (`v1`) and JSON lines, never with a newline at
the end, to a temporary file that it renames; Hadoop's local file system adds `.<name>.crc`.
Without an fsync a power cut can leave the renamed file empty, cut short or zeroed. Spark
checks the `.crc` when it reads a file (a cut file then fails with `ChecksumException`), so
that is checked here too.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import CheckpointDamaged

COMPACT_SUFFIX = ".compact"
CRC_HEADER = b"crc\0"  # Hadoop's ChecksumFileSystem: header, bytes per sum, CRC32 per chunk


def _version(line: str) -> str | None:
    ok = len(line) > 1 and line[0] == "v" and line[1:].isdigit()
    return None if ok else "has no version line (it is empty or cut short)"


def _json_lines(lines: list[str], required: tuple[str, ...], first: int = 2) -> str | None:
    """Every line a JSON object with the `required` keys; `first` is the number of lines[0]."""
    for number, line in enumerate(lines, start=first):
        if line == "-":  # Spark's "no offset" for a source that has none yet
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return f"is cut short or garbled (line {number} is not complete JSON)"
        if not isinstance(value, dict) or any(k not in value for k in required):
            return f"is not what Spark writes (line {number} lacks {', '.join(required)})"
    return None


def _log_problem(text: str, min_entries: int, required: tuple[str, ...]) -> str | None:
    """A log file: a version line, then at least `min_entries` JSON lines."""
    lines = text.split("\n")
    problem = _version(lines[0])
    if problem:
        return problem
    if len(lines) - 1 < min_entries:
        return (f"is cut short ({len(lines) - 1} line(s) after the version, Spark writes at"
                f" least {min_entries})")
    return _json_lines(lines[1:], required)


def offsets_problem(text: str) -> str | None:
    """offsets/<batch>: version, batch metadata, the file source's offset."""
    problem = _log_problem(text, 2, ())
    if problem is None and text.split("\n")[2] != "-":
        problem = _json_lines(text.split("\n")[2:3], ("logOffset",), first=3)
    return problem


def commits_problem(text: str) -> str | None:
    return _log_problem(text, 1, ())


def sources_problem(text: str) -> str | None:
    """sources/0/<n> and <n>.compact: version, one line per file read."""
    return _log_problem(text, 1, ("path", "timestamp", "batchId"))


def metadata_problem(text: str) -> str | None:
    """metadata: one JSON object with the query id."""
    return _json_lines([text.strip()], ("id",), first=1) if text.strip() else "is empty"


def _log_files(folder: Path, compact: bool) -> Iterator[Path]:
    try:
        names = sorted(p.name for p in folder.iterdir())
    except FileNotFoundError:
        return
    for name in names:
        if name.isdigit() or (compact and name.endswith(COMPACT_SUFFIX)
                              and name[: -len(COMPACT_SUFFIX)].isdigit()):
            yield folder / name


def _checksum_problem(path: Path, data: bytes) -> str | None:
    """Whether `data` disagrees with the file's `.crc` (as Hadoop's reader would find)."""
    crc = path.with_name(f".{path.name}.crc")
    try:
        sums = crc.read_bytes()
    except FileNotFoundError:
        return None
    # Hadoop reads on without checking when the .crc itself is unreadable: so do we.
    if len(sums) < 8 or sums[:4] != CRC_HEADER:
        return None
    chunk = struct.unpack(">i", sums[4:8])[0]
    if chunk <= 0:
        return None
    stored = [struct.unpack(">I", sums[i:i + 4])[0] for i in range(8, len(sums) - 3, 4)]
    actual = [zlib.crc32(data[i:i + chunk]) for i in range(0, len(data), chunk)]
    if actual and stored[:len(actual)] != actual:
        return f"does not match its checksum file {crc.name} (it was cut short or changed)"
    return None


def check_file(path: Path, problem_of: Callable[[str], str | None]) -> None:
    """Raise CheckpointDamaged when Spark could not read `path`; a missing file is fine."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        raise CheckpointDamaged(str(path), f"cannot be read ({e.strerror})") from None
    if not data.strip(b"\0 \n"):
        raise CheckpointDamaged(str(path), "is empty" if not data else "holds only zero bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointDamaged(str(path), "is not text (garbled)") from None
    problem = problem_of(text) or _checksum_problem(path, data)
    if problem:
        raise CheckpointDamaged(str(path), problem)


def find_damage(checkpoint: Path) -> CheckpointDamaged | None:
    """The first file of a local checkpoint folder Spark could not read, or None."""
    checks = [(checkpoint / "metadata", metadata_problem)]
    checks += [(p, offsets_problem) for p in _log_files(checkpoint / "offsets", False)]
    checks += [(p, commits_problem) for p in _log_files(checkpoint / "commits", False)]
    checks += [(p, sources_problem)
               for p in _log_files(checkpoint / "sources" / "0", True)]
    for path, problem_of in checks:
        try:
            check_file(path, problem_of)
        except CheckpointDamaged as e:
            return e
    return None
