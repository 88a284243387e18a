"""The row rules inside Spark tasks, for files Spark reads (hdfs://, s3a://, or every batch
with --driver-batch-max-bytes 0).

The job never splits a file across tasks (`spark.sql.files.minPartitionNum=1`, large
`maxPartitionBytes`), so every task sees each of its files whole and in line order. One
`mapInArrow` pass can then number the lines, find the header and apply the same rules and
chunking as the driver (`pipeline.validate.columnar`, on the Arrow batches as they come),
with no shuffle. Spark plans a micro-batch in milliseconds this way: a plan with windows and
aggregations cost over a second per batch to re-plan.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from operator import itemgetter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from pipeline.contract import EVENTS_JSON
from pipeline.contract import KIND_REFUSED
from pipeline.errors import FileRefused
from pipeline.validate.chunks import CHUNK_MAX_BYTES
from pipeline.validate.chunks import EVENT_CHUNK_ROWS
from pipeline.validate.columnar import Piece
from pipeline.validate.columnar import chunks_of_pieces

CHUNK_SCHEMA = pa.schema([("source_file", pa.string()), ("kind", pa.string()),
                          ("chunk", pa.int64()), ("rows", pa.int64()),
                          ("payload", pa.string())])
# The same with each payload's UTF-8 deflated (zlib): a file's chunks reach the driver as
# one task result, which Spark's transport buffers whole, so its size is what the driver's
# memory grows with. Checked rows compress about fourfold, at little cost to executors.
PACKED_CHUNK_SCHEMA = pa.schema([*(f for f in CHUNK_SCHEMA if f.name != "payload"),
                                 ("payload", pa.binary())])
PACK_LEVEL = 1  # zlib's fastest: most of the size gain, a fraction of the time


def unpack_payload(payload: bytes | bytearray) -> str:
    """A PACKED_CHUNK_SCHEMA payload as text."""
    return zlib.decompress(payload).decode("utf-8")


def refusal(payload: str) -> FileRefused:
    """The FileRefused a KIND_REFUSED chunk's payload stands for."""
    reason, detail = json.loads(payload)
    return FileRefused(reason, detail)


def _ddl(schema: pa.Schema) -> str:
    types = {pa.string(): "STRING", pa.int64(): "BIGINT", pa.binary(): "BINARY"}
    return ", ".join(f"{f.name} {types[f.type]}" for f in schema)


def _runs(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, Piece]]:
    """(source_file, (texts, states)) for each run of one file's lines in the batches."""
    for batch in batches:
        if not batch.num_rows:
            continue
        files = batch.column("source_file")
        texts = batch.column("value").cast(pa.string())
        states = np.asarray(batch.column("state").to_numpy(zero_copy_only=False), np.int8)
        changes = pc.not_equal(files.slice(1), files.slice(0, len(files) - 1))
        starts = [0, *(int(i) + 1 for i in np.flatnonzero(
            changes.to_numpy(zero_copy_only=False)))]
        for start, stop in zip(starts, [*starts[1:], len(files)], strict=True):
            yield files[start].as_py(), (texts.slice(start, stop - start), states[start:stop])


def _files(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, Iterator[Piece]]]:
    """(source_file, pieces of its lines) for each file of a task."""
    for path, group in itertools.groupby(_runs(batches), key=itemgetter(0)):
        yield path, (piece for _, piece in group)


def to_payload_chunks(lines: DataFrame, event_types: Sequence[str],
                      source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                      chunk_bytes: int = CHUNK_MAX_BYTES, event_format: str = EVENTS_JSON,
                      packed: bool = False) -> DataFrame:
    """Each file's `file_chunks`, as rows of CHUNK_SCHEMA (PACKED_CHUNK_SCHEMA if `packed`).
    Files with no rows give no chunk; a file refused as a whole (its header) gives one
    chunk of kind KIND_REFUSED, its payload `refusal` reads."""
    types, tz = tuple(event_types), source_time_zone
    schema = PACKED_CHUNK_SCHEMA if packed else CHUNK_SCHEMA

    def row(path: str, kind: str, chunk: int, rows: int, payload: str) -> pa.RecordBatch:
        data = zlib.compress(payload.encode("utf-8"), PACK_LEVEL) if packed else payload
        return pa.RecordBatch.from_pydict(
            {"source_file": [path], "kind": [kind], "chunk": [chunk], "rows": [rows],
             "payload": [data]}, schema=schema)

    def chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for path, pieces in _files(batches):
            try:
                for kind, chunk, rows, payload in chunks_of_pieces(
                        pieces, types, tz, chunk_rows, event_format=event_format,
                        chunk_bytes=chunk_bytes):
                    yield row(path, kind, chunk, rows, payload)
            except FileRefused as e:
                # Refused at its header, before any chunk: the driver quarantines the file.
                yield row(path, KIND_REFUSED, 0, 0, json.dumps([e.reason, e.detail]))

    return lines.mapInArrow(chunks, _ddl(schema))
