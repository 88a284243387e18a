"""The row rules inside Spark tasks, for files Spark reads (hdfs://, s3a://, or every batch
with --driver-batch-max-bytes 0).

The job never splits a file across tasks (`spark.sql.files.minPartitionNum=1`, large
`maxPartitionBytes`), so every task sees each of its files whole and in line order. One
`mapInArrow` pass can then number the lines, find the header and apply the same rules and
chunking as the driver (`pipeline.validate.chunks.file_chunks`), with no shuffle. Spark plans
a micro-batch in milliseconds this way: a plan with windows and aggregations cost over a
second per batch to re-plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from operator import itemgetter

import pyarrow as pa
from pyspark.sql import DataFrame

from pipeline.validate.chunks import CHUNK_MAX_BYTES
from pipeline.validate.chunks import EVENT_CHUNK_ROWS
from pipeline.validate.chunks import file_chunks

CHUNK_SCHEMA = pa.schema([("source_file", pa.string()), ("kind", pa.string()),
                          ("chunk", pa.int64()), ("rows", pa.int64()),
                          ("payload", pa.string())])


def _ddl(schema: pa.Schema) -> str:
    types = {pa.string(): "STRING", pa.int64(): "BIGINT"}
    return ", ".join(f"{f.name} {types[f.type]}" for f in schema)


def _files(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[str, Iterator]]:
    """(source_file, lines) for each file of a task, lines as (text, state)."""
    def rows():
        for batch in batches:
            yield from zip(batch.column("source_file").to_pylist(),
                           batch.column("value").to_pylist(),
                           batch.column("state").to_pylist())
    for path, group in itertools.groupby(rows(), key=itemgetter(0)):
        yield path, ((text, ok) for _, text, ok in group)


def to_payload_chunks(lines: DataFrame, event_types: Sequence[str],
                      source_time_zone: str = "UTC", chunk_rows: int = EVENT_CHUNK_ROWS,
                      chunk_bytes: int = CHUNK_MAX_BYTES) -> DataFrame:
    """Each file's `file_chunks`, as rows of CHUNK_SCHEMA. Files with no rows give no chunk."""
    types, tz = tuple(event_types), source_time_zone

    def chunks(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for path, file_lines in _files(batches):
            for kind, chunk, rows, payload in file_chunks(file_lines, types, tz, chunk_rows,
                                                          chunk_bytes=chunk_bytes):
                yield pa.RecordBatch.from_pydict(
                    {"source_file": [path], "kind": [kind], "chunk": [chunk], "rows": [rows],
                     "payload": [payload]}, schema=CHUNK_SCHEMA)

    return lines.mapInArrow(chunks, _ddl(CHUNK_SCHEMA))
