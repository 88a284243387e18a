"""The rules on Arrow arrays (pipeline/validate/columnar.py) against the per-line rules they
replace (pipeline/validate/rules.py, the reference): the bad-input corpus and a seeded,
randomly damaged corpus go through both, read by the job's own reader, and every chunk (every
event, every reject with its line number, reason, detail and raw line) must be the same text.

The seed is printed; COLUMNAR_SEED=<n> runs the damaged corpus again with seed n.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.contract import EVENT_FIELDS
from pipeline.contract import EVENTS_JSON
from pipeline.contract import EVENTS_TSV
from pipeline.contract import LINE_MAX_BYTES
from pipeline.errors import FileRefused
from pipeline.read.local import LocalFile
from pipeline.validate import chunks
from pipeline.validate import columnar

CORPUS = Path(__file__).parent / "corpus"
SEED = int(os.environ.get("COLUMNAR_SEED", random.SystemRandom().randrange(1 << 32)))
# (event format, chunk rows, chunk bytes, block lines, bytes read at a time): small chunks and
# blocks put chunk and block ends everywhere, so rows are counted across them and quoted
# records cross them.
SETTINGS = [
    (EVENTS_JSON, chunks.EVENT_CHUNK_ROWS, chunks.CHUNK_MAX_BYTES, columnar.BLOCK_LINES,
     1 << 22),
    (EVENTS_TSV, chunks.EVENT_CHUNK_ROWS, chunks.CHUNK_MAX_BYTES, columnar.BLOCK_LINES, 100),
    (EVENTS_JSON, 3, 400, 5, 7),
    (EVENTS_TSV, 7, 300, 2, 1000),
    (EVENTS_JSON, 50, 2000, 3, 1 << 22),
]
TIME_ZONES = ["UTC", "America/New_York"]


def first_difference(expected: list, actual: list) -> str:
    """The first chunk, and in it the first row, where the two outputs part."""
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            if want[:2] != got[:2] or want[1] == EVENTS_TSV:
                return f"chunk {index}: expected {want!r:.600} got {got!r:.600}"
            want_rows = json.loads(want[3]) if want[3].startswith("[") else want[3]
            got_rows = json.loads(got[3]) if got[3].startswith("[") else got[3]
            for row_w, row_g in zip(want_rows, got_rows, strict=False):
                if row_w != row_g:
                    return f"chunk {index} ({want[0]}): expected row {row_w!r} got {row_g!r}"
            return f"chunk {index}: {want[2]} rows expected, {got[2]} got"
    return f"{len(expected)} chunks expected, {len(actual)} got"


def outcome(chunk_iterator) -> list:
    """Every chunk, or for a file refused as a whole (its header) its reason and detail."""
    try:
        return list(chunk_iterator)
    except FileRefused as e:
        return [("refused", e.reason, e.detail)]


def assert_same(path: Path, time_zone: str) -> None:
    """The reference on the file's lines, against the columnar rules on the same lines and
    on the reader's Arrow pieces (as the driver route reads them)."""
    lines = list(LocalFile(path).lines())
    for event_format, chunk_rows, chunk_bytes, block_lines, read_bytes in SETTINGS:
        expected = outcome(chunks.file_chunks(iter(lines), DEFAULT_EVENT_TYPES, time_zone,
                                              chunk_rows, event_format, chunk_bytes))
        from_lines = outcome(columnar.file_chunks(iter(lines), DEFAULT_EVENT_TYPES,
                                                  time_zone, chunk_rows, event_format,
                                                  chunk_bytes, block_lines))
        local = LocalFile(path, block_bytes=read_bytes)
        from_pieces = outcome(columnar.chunks_of_pieces(
            local.line_pieces(), DEFAULT_EVENT_TYPES, time_zone, chunk_rows, event_format,
            chunk_bytes, block_lines))
        for actual in (from_lines, from_pieces):
            assert actual == expected, (
                f"{path.name} ({event_format}, {chunk_rows} rows, {chunk_bytes} bytes, blocks"
                f" of {block_lines}, reads of {read_bytes}, {time_zone}; seed {SEED}):"
                f" {first_difference(expected, actual)}")
        if not (expected and expected[0][0] == "refused"):  # a refused file is read no further
            assert local.facts() == LocalFile(path).read_facts()


@pytest.mark.parametrize("path", sorted(CORPUS.glob("events_*.csv")), ids=lambda p: p.name)
@pytest.mark.parametrize("time_zone", TIME_ZONES)
def test_corpus_gives_the_same_chunks(path, time_zone):
    assert_same(path, time_zone)


# -- the damaged corpus -----------------------------------------------------------------------
ODD_TEXT = ["\u00e9", "\u4e2d", "\U0001f600", "\u00a0", "\u3000", "\u2028", "\u0085", "\ufeff",
            "\u0663", "\uff11", "\t", "\\", "\x0b", "\x1c", "\x00", ",", '"', '""', "\r", " "]
TIMES = ["2026-01-31T12:00:00Z", "2026-01-31 12:00:00", "2026-01-31T12:00:00.5Z",
         "2026-01-31T12:00:00.123456Z", "2026-01-31T12:00:00+05:30", "2026-01-31T12:00:00-08:00",
         "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
         "2000-02-29T23:59:59Z", "0999-01-01T00:00:00Z", "2026-13-01T00:00:00Z",
         "2026-01-31T24:00:00Z", "2026-01-31T12:60:00Z", "2026-01-31T12:00:60Z",
         "2026-01-31T12:00:00.Z", "2026-01-31T12:00:00.1234567Z", "2026-03-08T02:30:00",
         "2026-11-01T01:30:00", "9999-12-31T23:00:00-05:00", "2026-01-31t12:00:00Z",
         "\u0662\u0660\u0662\u0666-01-31T12:00:00Z", "2026-01-31T12:00:00ZZ", "yesterday", ""]
PRICES = ["9.99", "0", "10", "1234567890.12", "12345678901", "1.999", "-5.00", "-0", "abc",
          "NaN", "1e3", " 7.50 ", ".5", "5.", "", "+1", "\uff11.00", "-1234567890.12"]
TYPES = [*DEFAULT_EVENT_TYPES, "VIEW", " view ", "teleport", "", "view\t"]
HEADERS = [",".join(EVENT_FIELDS), "\ufeff" + ",".join(EVENT_FIELDS),
           "Price , EVENT_TIME,event_id,user_id,product_id,event_type",
           "event_id,user_id,product_id,event_type,price", "event_id,user,product_id,a,b,c",
           '"event_id","user_id","product_id","event_type","price","event_time"',
           "a,b,c,d,e,f", "", "\t",
           "user_id,event_id,product_id,event_type,price,event_time,note",
           "event_id,user_id,product_id,event_type,price,event_time,event_id"]
# What may come before the header: blank lines, Excel's separator line.
PREAMBLES = [[], [], [], [""], ["", "  "], ["sep=,"], ["SEP=,", ""], ["sep=;"]]


def good_row(rng: random.Random) -> list[str]:
    return [f"e{rng.randrange(10 ** 6)}", f"u{rng.randrange(1000)}",
            "p" * rng.choice([1, 1, 1, 63, 64, 65]) + str(rng.randrange(100)),
            rng.choice(DEFAULT_EVENT_TYPES), f"{rng.randrange(100000) / 100:.2f}",
            rng.choice(TIMES[:4])]


def damaged_row(rng: random.Random) -> str:
    """One record's text: mostly good, or damaged in one or two ways."""
    row = good_row(rng)
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        index = rng.randrange(len(row))
        match rng.randrange(9):
            case 0:
                row[index] = ""
            case 1:
                other = rng.randrange(len(row))
                row[index], row[other] = row[other], row[index]
            case 2:
                row[5] = rng.choice(TIMES)
            case 3:
                row[4] = rng.choice(PRICES)
            case 4:
                row[3] = rng.choice(TYPES)
            case 5:
                cut = rng.randrange(len(row[index]) + 1)
                row[index] = row[index][:cut] + rng.choice(ODD_TEXT) + row[index][cut:]
            case 6:
                row[index] = " " * rng.randrange(3) + row[index] + "\t" * rng.randrange(2)
            case 7:
                row[index] = '"' + row[index].replace('"', '""') + rng.choice(['"', '"', ""])
            case 8:
                row[index] = '"' + row[index] + "\n" + rng.choice(["x", "", "a,b"]) + '"'
    text = ",".join(row)
    if rng.random() < 0.05:
        text += "," * rng.randrange(1, 3)
    if rng.random() < 0.05:
        text = text[: rng.randrange(len(text) + 1)]
    return text


def damage_bytes(rng: random.Random, data: bytes) -> bytes:
    """Bytes inserted, deleted and replaced here and there: broken UTF-8, cut lines."""
    data = bytearray(data)
    for _ in range(rng.randrange(4)):
        at = rng.randrange(len(data) + 1)
        match rng.randrange(4):
            case 0:
                data[at:at] = rng.choice([b"\xff", b"\xc3", b"\xe2\x80", b"\x00", b"\r",
                                          b"\n", b'"', b"\r\n"])
            case 1:
                del data[at:at + rng.randrange(1, 6)]
            case 2:
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
            case 3:
                data[at:at] = b"x" * (LINE_MAX_BYTES + rng.randrange(-2, 3))
    return bytes(data)


def damaged_file(rng: random.Random) -> bytes:
    header = rng.choice(PREAMBLES) + ([rng.choice(HEADERS)] if rng.random() < 0.8 else [])
    records = [damaged_row(rng) if rng.random() < 0.97 else rng.choice(["", "  ", "\t"])
               for _ in range(rng.randrange(1, 80))]
    ending = rng.choice(["\n", "\n", "\r\n", "\r"])
    text = ending.join(header + records) + (ending if rng.random() < 0.8 else "")
    data = text.encode("utf-8")
    return damage_bytes(rng, data) if rng.random() < 0.5 else data


def test_damaged_corpus_gives_the_same_chunks(tmp_path):
    print(f"seed {SEED} (set COLUMNAR_SEED to run it again)")
    rng = random.Random(SEED)
    for number in range(80):
        path = tmp_path / f"events_{number:03}.csv"
        path.write_bytes(damaged_file(rng))
        assert_same(path, rng.choice(TIME_ZONES))


def test_arrow_pieces_of_any_size_give_the_same_chunks(tmp_path):
    """The Spark route hands a file over in Arrow batches of Spark's size, states as ints."""
    print(f"seed {SEED} (set COLUMNAR_SEED to run it again)")
    rng = random.Random(SEED + 1)
    for number in range(40):
        path = tmp_path / f"events_{number:03}.csv"
        path.write_bytes(damaged_file(rng))
        lines = list(LocalFile(path).lines())
        cuts = sorted(rng.sample(range(1, len(lines)), min(3, len(lines) - 1))) \
            if len(lines) > 1 else []
        bounds = list(zip([0, *cuts], [*cuts, len(lines)], strict=True))
        pieces = [(pa.array([t for t, _ in lines[a:b]], pa.string()),
                   np.array([s for _, s in lines[a:b]], np.int32)) for a, b in bounds]
        expected = outcome(chunks.file_chunks(iter(lines), DEFAULT_EVENT_TYPES, "UTC", 5))
        actual = outcome(columnar.chunks_of_pieces(pieces, DEFAULT_EVENT_TYPES, "UTC", 5,
                                                   block_lines=rng.choice([1, 4, 64])))
        assert actual == expected, f"{path.name}: {first_difference(expected, actual)}"
