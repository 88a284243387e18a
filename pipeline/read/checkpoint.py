"""Which files make up a micro-batch, read from Spark's own checkpoint logs.

The batch DataFrame has no rows for an empty file, and `DataFrame.inputFiles()` is empty
inside foreachBatch, yet every file must be accounted for (and recognised after a checkpoint
is lost). The file source records each batch's files in `<checkpoint>/sources/0/<n>`;
`<checkpoint>/offsets/<batch>` names the log entry `n` of the batch. A local checkpoint is
read directly; any other checkpoint URI (hdfs://, s3a://) through Hadoop's FileSystem.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from pipeline.errors import CheckpointDamaged
from pipeline.read.checkpoint_files import COMPACT_SUFFIX
from pipeline.read.checkpoint_files import offsets_problem
from pipeline.read.checkpoint_files import sources_problem
from pipeline.read.local import decode_uri

# What a damaged file (empty, cut short, garbled) makes the parsing below raise.
UNPARSABLE = (ValueError, IndexError, KeyError, TypeError)


@dataclass(frozen=True)
class SourceFile:
    """One input file of a batch, as Spark listed it.

    `uri` is Spark's spelling (percent-encoded), `name` the decoded one the tables hold,
    `local_path` the file on this machine (None on hdfs://, s3a:// and the like).
    `recorded_as` is the name to record instead, for a file replayed from an archive
    (`pipeline.ops.rebuild`): the name it had when it was first loaded.
    """

    uri: str
    modified_at: datetime
    recorded_as: str | None = None

    @property
    def name(self) -> str:
        return self.recorded_as or decode_uri(self.uri)[0]

    @property
    def local_path(self) -> Path | None:
        return decode_uri(self.uri)[1]


class CheckpointLog:
    """Reads a streaming query's offset and file-source logs."""

    def __init__(self, spark: SparkSession, checkpoint: str, through_hadoop: bool = False):
        self._jvm = spark._jvm
        self._root = self._jvm.org.apache.hadoop.fs.Path(checkpoint)
        self._fs = self._root.getFileSystem(spark._jsc.hadoopConfiguration())
        # Every batch reads three small files here: a local checkpoint is read in Python,
        # without a py4j call per file (docs/benchmarks.md#what-the-codes-constants-rest-on).
        parsed = urlparse(checkpoint)
        local = parsed.scheme in ("", "file") and not through_hadoop
        self._local_root = Path(unquote(parsed.path) if parsed.scheme else checkpoint) \
            if local else None

    def _read(self, relative: str) -> str | None:
        if self._local_root is not None:
            try:
                return (self._local_root / relative).read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except UnicodeDecodeError:
                raise CheckpointDamaged(self._where(relative), "is not text (garbled)") from None
        path = self._jvm.org.apache.hadoop.fs.Path(self._root, relative)
        if not self._fs.exists(path):
            return None
        stream = self._fs.open(path)
        try:
            return self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
        finally:
            stream.close()

    def _where(self, relative: str) -> str:
        root = self._local_root if self._local_root is not None else self._root.toString()
        return f"{root}/{relative}"

    def _names(self, relative: str) -> list[str]:
        if self._local_root is not None:
            return os.listdir(self._local_root / relative)
        status = self._fs.listStatus(self._jvm.org.apache.hadoop.fs.Path(self._root, relative))
        return [s.getPath().getName() for s in status]

    def _log_offset(self, batch_id: int) -> int:
        text = self._read(f"offsets/{batch_id}")
        if text is None:
            raise FileNotFoundError(f"checkpoint has no offsets/{batch_id}")
        # Line 1 is the format version, line 2 batch metadata, then one offset per source.
        try:
            return int(json.loads(text.splitlines()[2])["logOffset"])
        except UNPARSABLE:
            raise CheckpointDamaged(self._where(f"offsets/{batch_id}"),
                                    offsets_problem(text) or "cannot be parsed") from None

    def _entries(self, log_offset: int) -> list[dict]:
        relative = f"sources/0/{log_offset}"
        text = self._read(relative)
        if text is None:
            # Every compactInterval-th entry is `<n>.compact`, holding all entries so far.
            relative = f"sources/0/{log_offset}{COMPACT_SUFFIX}"
            text = self._read(relative)
        if text is None:
            relative, text = self._latest_compact_after(log_offset)
        # A compact file holds every file ever read: parse only the lines that can be ours.
        ours = re.compile(rf'"batchId"\s*:\s*{log_offset}\b').search
        try:
            entries = [json.loads(line) for line in text.splitlines()[1:] if ours(line)]
            entries = [e for e in entries if int(e["batchId"]) == log_offset]
            for e in entries:
                e["path"], e["timestamp"] = str(e["path"]), int(e["timestamp"])
        except UNPARSABLE:
            raise CheckpointDamaged(self._where(relative),
                                    sources_problem(text) or "cannot be parsed") from None
        # None found: an empty or cut file reads as no entries, and would lose the batch.
        problem = None if entries else sources_problem(text)
        if problem:
            raise CheckpointDamaged(self._where(relative), problem)
        return entries

    def _latest_compact_after(self, log_offset: int) -> tuple[str, str]:
        compacts = sorted(int(name[: -len(COMPACT_SUFFIX)]) for name in self._names("sources/0")
                          if name.endswith(COMPACT_SUFFIX))
        later = [n for n in compacts if n >= log_offset]
        if not later:
            raise FileNotFoundError(f"checkpoint file-source log has no entry {log_offset}")
        relative = f"sources/0/{later[0]}{COMPACT_SUFFIX}"
        return relative, self._read(relative) or ""

    def files_of_batch(self, batch_id: int) -> list[SourceFile]:
        """The files of micro-batch `batch_id`, empty files included, in listing order."""
        end = self._log_offset(batch_id)
        start = self._log_offset(batch_id - 1) if batch_id > 0 else -1
        files = []
        for log_offset in range(start + 1, end + 1):
            for entry in self._entries(log_offset):
                modified = datetime.fromtimestamp(entry["timestamp"] / 1000, tz=UTC)
                files.append(SourceFile(uri=entry["path"], modified_at=modified))
        return files
