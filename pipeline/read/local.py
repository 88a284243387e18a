"""Reading one source file from a local folder, safely and with a record of what was read.

Anyone who can write the drop folder decides what sits there, so a file is opened only when
it is a regular file, never through a symbolic link (`lstat`, then `O_NOFOLLOW`), and never
in a way that can block (a FIFO is refused before it is opened, `O_NONBLOCK` guards the race).
Lines are split in bounded memory: a line longer than `LINE_MAX_BYTES` is cut there and marked,
so a 200 MB line with no newline costs one block of memory, not 200 MB.

While the lines are read, the file's size, physical line count and SHA-256 are taken from
the same bytes; they go into `ingest_files`, where `pipeline.ops.reconcile` compares them with the
file on disk. A file whose size or modification time changed while it was read is refused as
a whole: what was read is not what is there.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract import LINE_BAD_UTF8
from pipeline.contract import LINE_END_CR
from pipeline.contract import LINE_END_CRLF
from pipeline.contract import LINE_MAX_BYTES
from pipeline.contract import LINE_OK
from pipeline.contract import LINE_TOO_LONG
from pipeline.contract import FileFacts
from pipeline.errors import FileRefused

_BLOCK_BYTES = 4 * 1024 * 1024


def decode_uri(uri: str) -> tuple[str, Path | None]:
    """(name stored in the tables, local path or None) of a file URI as Spark writes it.

    Spark percent-encodes every path it lists (`file:///d/a%3Fb.csv`). It is decoded once,
    here: `?`, `#`, `%` and `%20` in a name are ordinary characters of that name, and a
    decoded path must never be parsed as a URI again.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file"):
        return uri, None
    path = unquote(parts.path) if parts.scheme else uri
    return "file:" + path, Path(path)


def uri_spellings(uri: str) -> list[str]:
    """The ways Spark spells one file's URI: its file-source log writes `file:///d/a.csv`,
    a row's `_metadata.file_path` says `file:/d/a.csv` (both percent-encoded)."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc:
        return [uri]
    return sorted({uri, f"file:{parts.path}", f"file://{parts.path}"})


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular_file(path: Path) -> tuple[int, os.stat_result]:
    """An open descriptor and status of `path`; FileRefused unless it is a regular file.

    FileNotFoundError passes through: the caller records such a file as missing.
    """
    try:
        mode = os.lstat(path).st_mode
    except PermissionError as e:  # a folder on the way that the job may not enter
        raise FileRefused("unreadable", f"cannot look at it: {e.strerror}") from None
    if stat.S_ISLNK(mode):
        raise FileRefused("symlink", "a symbolic link: not followed, its target was not read")
    if not stat.S_ISREG(mode):
        raise FileRefused("not_a_regular_file", f"{_kind(mode)}: nothing was read")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as e:
        raise FileRefused("unreadable", f"cannot open it: {e.strerror}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a link after lstat
            raise FileRefused("symlink", "a symbolic link: not followed") from None
        if e.errno == errno.ENOENT:
            raise FileNotFoundError(e.errno, e.strerror, str(path)) from None
        raise FileRefused("unreadable", f"cannot open it: {e.strerror}") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):  # replaced by something else after lstat
        os.close(fd)
        raise FileRefused("not_a_regular_file", f"{_kind(status.st_mode)}: nothing was read")
    return fd, status


def split_lines(blocks: Iterator[bytes], max_bytes: int = LINE_MAX_BYTES) -> Iterator[bytes]:
    """Physical lines of a byte stream without their ends (\\n, \\r\\n or \\r, as Spark's text
    source splits). A line over `max_bytes` comes cut to `max_bytes + 1` bytes, so its length
    tells it apart; memory stays bounded by one block plus one cut line."""
    for run in line_runs(blocks, max_bytes):
        for line in run.splitlines():
            yield line if len(line) <= max_bytes else line[: max_bytes + 1]


def line_runs(blocks: Iterator[bytes], max_bytes: int = LINE_MAX_BYTES) -> Iterator[bytes]:
    """The byte stream in runs of whole lines, with their ends (but the last line's, which
    may have none): `split_lines` splits each run, `split_lines_arrow` a run at a time."""

    def cut(unfinished: bytes) -> bytes:
        # An overlong unfinished line keeps max_bytes + 1 bytes, and its final \r, which
        # may be the first half of a \r\n.
        if len(unfinished) <= max_bytes + 1:
            return unfinished
        return unfinished[: max_bytes + 1] + (b"\r" if unfinished.endswith(b"\r") else b"")

    carry = b""
    for block in blocks:
        data = carry + block
        # Split after the last line end, but keep a final \r: its \n may start the next block.
        end = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1))
        if end < 0:
            carry = cut(data)
            continue
        carry = cut(data[end + 1:])
        yield data[: end + 1]
    if carry:
        yield carry


def plain_run_lines(run: bytes, max_bytes: int = LINE_MAX_BYTES) -> pa.Array | None:
    """The lines of a run as one Arrow array, split in C, when the run is the common case:
    valid UTF-8, `\n` or `\r\n` line ends, no line over `max_bytes`. None for any other
    run, which `split_lines` and `decode_line` read line by line."""
    carriage_returns = run.count(b"\r")
    if carriage_returns and carriage_returns != run.count(b"\r\n"):
        return None
    try:
        run.decode("utf-8")  # Python's own check, so that the states agree with decode_line
    except UnicodeDecodeError:
        return None
    # The run as one string, without a copy (checked as UTF-8 just above).
    whole = pa.StringArray.from_buffers(1, pa.py_buffer(np.array([0, len(run)], np.int32)),
                                        pa.py_buffer(run))
    lines = pc.list_flatten(pc.split_pattern(whole, "\n"))
    if run.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    if carriage_returns:  # each \r is the first half of a \r\n: a line end, not text
        lines = pc.utf8_rtrim(lines, "\r")
    if len(lines) and pc.max(pc.binary_length(lines)).as_py() > max_bytes:
        return None
    return lines


def _without_end(raw: bytes) -> tuple[bytes, int]:
    """A line from `splitlines(keepends=True)` without its end, and the end's state flag."""
    if raw.endswith(b"\r\n"):
        return raw[:-2], LINE_END_CRLF
    if raw.endswith(b"\r"):
        return raw[:-1], LINE_END_CR
    return raw.removesuffix(b"\n"), 0


def _crlf_ends(run: bytes, lines: int) -> np.ndarray:
    """LINE_END_CRLF for each of a run's `lines` lines that ends with \r\n (a run whose
    every \r is part of a \r\n), 0 for the others."""
    data = np.frombuffer(run, np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    flags = np.zeros(lines, np.int8)
    crlf = ends[(ends > 0) & (data[np.maximum(ends - 1, 0)] == ord("\r"))]
    # The k-th \n of the run ends its k-th line.
    flags[np.searchsorted(ends, crlf)] = LINE_END_CRLF
    return flags


def decode_line(raw: bytes, max_bytes: int = LINE_MAX_BYTES) -> tuple[str, int]:
    """(text, state) of one physical line; invalid UTF-8 is replaced by U+FFFD."""
    if len(raw) > max_bytes:
        return raw.decode("utf-8", "replace"), LINE_TOO_LONG
    try:
        return raw.decode("utf-8"), LINE_OK
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), LINE_BAD_UTF8


def file_facts(path: Path) -> FileFacts:
    """Size, physical lines and hash of a regular file, its lines not decoded."""
    return LocalFile(path).read_facts()


class LocalFile:
    """One local source file, read once as lines; `facts()` after the lines are consumed.

    Opening refuses what is not a regular file (FileRefused) and passes FileNotFoundError on.
    """

    def __init__(self, path: Path, max_line_bytes: int = LINE_MAX_BYTES,
                 block_bytes: int = _BLOCK_BYTES):
        self.path = path
        self._max = max_line_bytes
        self._block_bytes = block_bytes
        self._fd, self._status = open_regular_file(path)
        self._hash = hashlib.sha256()
        self._size = 0
        self._lines = 0
        self._done = False

    @property
    def size(self) -> int:
        """Bytes the file had when it was opened."""
        return self._status.st_size

    def _blocks(self) -> Iterator[bytes]:
        while True:
            try:
                block = os.read(self._fd, self._block_bytes)
            except OSError as e:
                raise FileRefused("unreadable", f"reading failed: {e.strerror}") from None
            if not block:
                return
            self._hash.update(block)
            self._size += len(block)
            yield block

    def lines(self) -> Iterator[tuple[str, int]]:
        """(text, state) of each physical line, in order; the state says a \r\n or \r
        line end (LINE_END_CRLF, LINE_END_CR), which a quoted field keeps as written."""
        try:
            for run in line_runs(self._blocks(), self._max):
                for raw in run.splitlines(keepends=True):
                    line, end = _without_end(raw)
                    self._lines += 1
                    text, state = decode_line(line[: self._max + 1], self._max)
                    yield text, state | end
            self._done = True
        finally:
            self.close()

    def line_pieces(self) -> Iterator[tuple[pa.Array, np.ndarray]]:
        """The lines of `lines()` a run at a time: (texts, states) as an Arrow array and
        a numpy array. Runs of plain lines are split without a Python object per line."""
        try:
            for run in line_runs(self._blocks(), self._max):
                texts = plain_run_lines(run, self._max)
                if texts is not None:
                    states = np.full(len(texts), LINE_OK, dtype=np.int8)
                    if b"\r" in run:  # every \r ends a \r\n line (plain_run_lines)
                        states |= _crlf_ends(run, len(texts))
                else:
                    decoded = []
                    for raw in run.splitlines(keepends=True):
                        line, end = _without_end(raw)
                        text, state = decode_line(line[: self._max + 1], self._max)
                        decoded.append((text, state | end))
                    texts = pa.array([text for text, _ in decoded], pa.string())
                    states = np.array([state for _, state in decoded], dtype=np.int8)
                self._lines += len(texts)
                yield texts, states
            self._done = True
        finally:
            self.close()

    def read_facts(self) -> FileFacts:
        """Read the file through without decoding its lines: its facts only."""
        try:
            for _ in split_lines(self._blocks(), self._max):
                self._lines += 1
            self._done = True
        finally:
            self.close()
        return self.facts()

    def facts(self) -> FileFacts:
        """Size, lines and hash of what was read; FileRefused if the file changed meanwhile."""
        if not self._done:
            raise RuntimeError("facts() before the lines were read")
        after = self._after
        if (after.st_size, after.st_mtime_ns) != (self._status.st_size, self._status.st_mtime_ns) \
                or self._size != self._status.st_size:
            raise FileRefused("changed_while_read",
                              f"the file changed while it was read ({self._status.st_size}"
                              f" bytes at the start, {self._size} read, {after.st_size} at the"
                              " end): load it again under a new name once it is complete")
        return FileFacts(self._size, self._lines, self._hash.hexdigest())

    def close(self) -> None:
        if self._fd >= 0:
            self._after = os.fstat(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
