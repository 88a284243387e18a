"""The local reader in process: line splitting in bounded memory, what it refuses to open,
and files that change, vanish or cannot be read while the job has them."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from pipeline.errors import FileRefused
from pipeline.read.local import LINE_BAD_UTF8
from pipeline.read.local import LINE_END_CRLF
from pipeline.read.local import LINE_OK
from pipeline.read.local import LINE_TOO_LONG
from pipeline.read.local import LocalFile
from pipeline.read.local import decode_uri
from pipeline.read.local import split_lines

SEED = 1303


def blocks(data: bytes, size: int):
    return (data[i:i + size] for i in range(0, len(data), size))


def test_split_lines_agrees_with_splitlines_whatever_the_block_size():
    rng = random.Random(SEED)
    print(f"seed {SEED}")
    for _ in range(1000):
        data = bytes(rng.choice(b"aab\r\n,") for _ in range(rng.randrange(0, 60)))
        for size in (1, 2, 3, 7, 64):
            for limit in (3, 5, 100):
                want = [line if len(line) <= limit else line[: limit + 1]
                        for line in data.splitlines()]
                assert list(split_lines(blocks(data, size), max_bytes=limit)) == want, \
                    (data, size, limit)


def test_a_long_line_is_cut_to_one_byte_over_the_limit_and_the_next_line_survives():
    data = b"x" * 1000 + b"\nok\r\n" + b"y" * 50
    got = list(split_lines(blocks(data, 16), max_bytes=10))
    assert got == [b"x" * 11, b"ok", b"y" * 11]


@pytest.mark.parametrize("uri, name, path", [
    ("file:///d/events_a%3Fb.csv", "file:/d/events_a?b.csv", "/d/events_a?b.csv"),
    ("file:/d/events_a%23b.csv", "file:/d/events_a#b.csv", "/d/events_a#b.csv"),
    ("file:///d/events_%2520x.csv", "file:/d/events_%20x.csv", "/d/events_%20x.csv"),
    ("file:///d/events_100%25.csv", "file:/d/events_100%.csv", "/d/events_100%.csv"),
    ("file:///d/events_nl%0Ax.csv", "file:/d/events_nl\nx.csv", "/d/events_nl\nx.csv"),
    ("hdfs://nn/d/events_1.csv", "hdfs://nn/d/events_1.csv", None),
])
def test_spark_uris_are_decoded_exactly_once(uri, name, path):
    decoded_name, decoded_path = decode_uri(uri)
    assert decoded_name == name
    assert (str(decoded_path) if decoded_path else None) == path


def test_lines_states_and_facts(tmp_path):
    data = "h\r\nok ä\n".encode() + b"bad \xff\n" + b"z" * 20
    path = tmp_path / "events_1.csv"
    path.write_bytes(data)
    local = LocalFile(path, max_line_bytes=10)
    assert list(local.lines()) == [("h", LINE_OK | LINE_END_CRLF), ("ok ä", LINE_OK),
                                   ("bad \ufffd", LINE_BAD_UTF8), ("z" * 11, LINE_TOO_LONG)]
    facts = local.facts()
    assert (facts.size, facts.lines, facts.sha256) == (len(data), 4,
                                                       hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.symlink_to(p.parent / "target.csv"), "symlink"),
    (lambda p: os.mkfifo(p), "not_a_regular_file"),
    (lambda p: p.mkdir(), "not_a_regular_file"),
])
def test_what_is_not_a_regular_file_is_refused_unopened(tmp_path, make, reason):
    (tmp_path / "target.csv").write_text("secret\n")
    path = tmp_path / "events_x.csv"
    make(path)
    with pytest.raises(FileRefused) as refused:
        LocalFile(path)
    assert refused.value.reason == reason


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        LocalFile(tmp_path / "events_gone.csv")


def read_with(tmp_path, change) -> tuple[LocalFile, int]:
    """A 10-line file read, with `change(path)` done after its first line: the reader and
    how many lines it gave."""
    path = tmp_path / "events_x.csv"
    path.write_bytes(b"a\n" * 10)
    local = LocalFile(path, max_line_bytes=100)
    lines = local.lines()
    next(lines)
    change(path)
    return local, 1 + len(list(lines))


def test_a_file_truncated_while_read_is_refused(tmp_path):
    local, _ = read_with(tmp_path, lambda path: os.truncate(path, 4))
    with pytest.raises(FileRefused) as refused:
        local.facts()
    assert refused.value.reason == "changed_while_read"


def test_a_file_deleted_while_read_is_read_whole(tmp_path):
    local, lines = read_with(tmp_path, lambda path: path.unlink())
    assert lines == 10 and local.facts().lines == 10


def refusal_as_nobody(path) -> str:
    """What LocalFile(path) says in a child that gave up root (root reads anything)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            os.setgid(65534)
            os.setuid(65534)
            LocalFile(path)
            answer = b"opened"
        except FileRefused as e:
            answer = e.reason.encode()
        except BaseException as e:  # noqa: BLE001 - anything else is a failure to report
            answer = repr(e).encode()
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    answer = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    return answer


def test_an_unreadable_file_is_refused(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="pipeline-test-"))
    try:
        folder.chmod(0o755)
        unreadable = folder / "events_x.csv"
        unreadable.write_text("a\n")
        unreadable.chmod(0)
        assert refusal_as_nobody(unreadable) == "unreadable"
        hidden = tmp_path / "events_y.csv"  # pytest's folders are closed to others
        hidden.write_text("a\n")
        assert refusal_as_nobody(hidden) == "unreadable"
    finally:
        shutil.rmtree(folder)
