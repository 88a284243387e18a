"""Check every file against the tables and against its own bytes; print any that does not agree.

Usage:
    python -m pipeline.ops.reconcile [--archive-dir DIR|URI] [--json]

For every file in `ingest_files`:
- its counts add up: rows_read = rows_written + rows_rejected + rows_duplicate, and its
  rejected rows are in `events_rejected`; over all files the rows written are the rows in
  `events` (the job is the only writer of that table);
- the file itself, still in its folder or archived under --archive-dir (as the job's
  `--clean-source archive` leaves it), is read again: its size, physical lines and SHA-256
  must be what the job recorded when it read it, so a file appended to, overwritten or read
  wrongly shows; and a file recorded as loaded with 0 rows must hold no data line.
  Files on hdfs:// or s3a:// (and an --archive-dir there) are read through Hadoop's
  FileSystem in a local Spark, with the connector and settings the job was given: pass
  them as `PYSPARK_SUBMIT_ARGS="--jars ... --conf spark.hadoop.fs.s3a.... pyspark-shell"`
  (docs/drivers-and-storage.md#storage).

The recount here is independent of the job's reader: a regular expression counts line ends,
and data lines are non-blank lines after an optional header.
Exit 0 when all hold, 1 when any does not, 2 when the database cannot be read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from urllib.parse import urlsplit

from py4j.protocol import Py4JJavaError

from pipeline.cli import tool_parser
from pipeline.contract import EVENT_FIELDS
from pipeline.contract import LINE_MAX_BYTES
from pipeline.contract import printable_name
from pipeline.report.db import read_or_report

# Names are compared byte for byte: the tables' default collation would merge events_A.csv
# with events_a.csv.
_FILES = """
SELECT f.source_file, f.status, f.rows_read, f.rows_written, f.rows_rejected, f.rows_duplicate,
       coalesce(r.rejected_rows, 0), f.file_bytes, f.file_lines, f.file_sha256
FROM ingest_files f
LEFT JOIN (SELECT source_file COLLATE utf8mb4_bin AS name, count(*) AS rejected_rows
           FROM events_rejected WHERE line_number IS NOT NULL
           GROUP BY source_file COLLATE utf8mb4_bin) r
  ON r.name = f.source_file COLLATE utf8mb4_bin
"""
_LINE_END = re.compile(rb"\r\n|\r|\n")


def _blank(piece: bytes, first: bool) -> bool:
    """Blank as the row rules define it: only whitespace once decoded (and a first line's
    BOM dropped); a line over the length limit is a row whatever it holds."""
    if len(piece) > LINE_MAX_BYTES:
        return False
    text = piece.decode("utf-8", "replace")
    return not (text.removeprefix("\ufeff") if first else text).strip()


@dataclass(frozen=True)
class Recount:
    """A file's bytes as this module sees them, without the job's reader."""

    size: int
    lines: int
    data_lines: int
    sha256: str
    prefix_sha256: str | None  # of the first `recorded` bytes, when the file is longer

    @classmethod
    def of(cls, data: bytes, recorded_size: int | None) -> Recount:
        pieces = _LINE_END.split(data)
        if pieces[-1] == b"":  # the file ends with a line end, or is empty
            pieces.pop()
        non_blank = sum(1 for i, piece in enumerate(pieces) if not _blank(piece, i == 0))
        first = pieces[0].decode("utf-8", "replace").lstrip("\ufeff") if pieces else ""
        names = sorted(name.strip().strip('"').lower() for name in first.split(","))
        data_lines = non_blank - (1 if names == sorted(EVENT_FIELDS) else 0)
        prefix = None
        if recorded_size is not None and len(data) > recorded_size:
            prefix = hashlib.sha256(data[:recorded_size]).hexdigest()
        return cls(len(data), len(pieces), data_lines, hashlib.sha256(data).hexdigest(), prefix)


@dataclass
class Report:
    files: int = 0
    checked_on_disk: int = 0
    not_on_disk: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def locate(source_file: str, archive_dir: Path | None) -> Path | None:
    """The file named in the tables, in its folder or archived; None when neither exists."""
    if not source_file.startswith("file:"):
        return None  # hdfs://, s3a://: RemoteFiles reads those
    path = Path(source_file[len("file:"):])
    candidates = [path]
    if archive_dir is not None:
        candidates.append(archive_dir / path.relative_to(path.anchor))
    for candidate in candidates:
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def is_remote(name: str) -> bool:
    return urlsplit(name).scheme not in ("", "file")


class RemoteFiles:
    """Files on hdfs://, s3a:// and the like, read through Hadoop's FileSystem.

    Spark (local, UI off) starts only when the first such file is asked for; its connector
    jars and `spark.hadoop.*` settings come from PYSPARK_SUBMIT_ARGS or spark-defaults.conf,
    as for any PySpark program.
    """

    def __init__(self, archive_uri: str | None):
        self._archive_uri = archive_uri
        self._spark = None

    def _jvm(self):
        if self._spark is None:
            from pyspark.sql import SparkSession

            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            self._spark = (SparkSession.builder.master("local[1]")
                           .appName("pipeline-reconcile")
                           .config("spark.ui.enabled", "false").getOrCreate())
            self._spark.sparkContext.setLogLevel("ERROR")
        return self._spark._jvm

    def read(self, name: str) -> bytes | None:
        """The bytes of the file the tables name (Spark's percent-encoded URI), or of its
        archived copy; None when neither exists."""
        jvm = self._jvm()
        conf = self._spark._jsc.hadoopConfiguration()
        path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(name))
        candidates = [path]
        if self._archive_uri is not None:
            # Where Spark's cleanSource puts it: the archive root + the file's decoded path.
            candidates.append(jvm.org.apache.hadoop.fs.Path(
                self._archive_uri.rstrip("/") + path.toUri().getPath()))
        for candidate in candidates:
            fs = candidate.getFileSystem(conf)
            if fs.isFile(candidate):
                stream = fs.open(candidate)
                try:
                    return bytes(jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
                finally:
                    stream.close()
        return None

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()


def read_back(name: str, archive_dir: str | None, remote: RemoteFiles) -> bytes | None:
    """A recorded file's bytes now, from wherever it is; None when it is gone."""
    if is_remote(name):
        return remote.read(name)
    local_archive = Path(archive_dir) if archive_dir and not is_remote(archive_dir) else None
    path = locate(name, local_archive)
    return path.read_bytes() if path is not None else None


def check_bytes(name: str, status: str, rows_read: int, recorded: tuple, data: bytes
                ) -> list[str]:
    """What differs between the recorded facts of a file and its bytes now."""
    size, lines, sha = recorded
    recount = Recount.of(data, size)
    if sha is not None and recount.sha256 != sha:
        if recount.prefix_sha256 == sha:
            return [f"{name}: appended to after it was loaded ({recount.size - size} bytes"
                    " more than were read): load the new lines as a file of their own"]
        return [f"{name}: changed after it was loaded (recorded {size} bytes, SHA-256"
                f" {sha[:12]}…; the file has {recount.size} bytes, {recount.sha256[:12]}…)"]
    problems = []
    if size is not None and recount.size != size:
        problems.append(f"{name}: recorded {size} bytes but the file has {recount.size}")
    if lines is not None and recount.lines != lines:
        problems.append(f"{name}: recorded {lines} lines but the file has {recount.lines}")
    if status == "loaded" and rows_read == 0 and recount.data_lines:
        problems.append(f"{name}: recorded as loaded with 0 rows, but it has"
                        f" {recount.data_lines} data line(s)")
    elif status == "loaded" and rows_read > recount.data_lines:
        problems.append(f"{name}: {rows_read} rows recorded, more than its"
                        f" {recount.data_lines} data line(s)")
    return problems


def reconcile(cursor, archive_dir: str | None = None) -> Report:
    """Every check above; each problem names a file or the whole table."""
    cursor.execute(_FILES)
    rows = cursor.fetchall()
    report = Report(files=len(rows))
    remote = RemoteFiles(archive_dir if archive_dir and is_remote(archive_dir) else None)
    try:
        for name, status, read, written, rejected, duplicate, rejected_rows, *facts in rows:
            if read != written + rejected + duplicate:
                report.problems.append(f"{name}: read {read} != written {written} + rejected"
                                       f" {rejected} + duplicate {duplicate}")
            if rejected != rejected_rows:
                report.problems.append(f"{name}: {rejected} rejected but {rejected_rows} rows"
                                       " in events_rejected")
            if status == "quarantined":
                report.quarantined.append(name)
            if status == "missing" or (status == "quarantined" and facts[0] is None):
                continue
            try:
                data = read_back(name, archive_dir, remote)
            except (Py4JJavaError, OSError) as e:  # the store refused, or is unreachable
                report.problems.append(f"{name}: could not be read back ({_first_line(e)}):"
                                       " check the storage settings")
                continue
            if data is None:
                report.not_on_disk.append(name)
                continue
            report.checked_on_disk += 1
            report.problems.extend(check_bytes(name, status, read, tuple(facts), data))
    finally:
        remote.close()
    cursor.execute("SELECT count(*) FROM events")
    events = cursor.fetchone()[0]
    written = sum(row[3] for row in rows)
    if events != written:
        report.problems.append(f"events holds {events} rows but the files report {written}"
                               " written")
    return report


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("pipeline.ops.reconcile", __doc__.split("\n\n")[0])
    parser.add_argument("--archive-dir", metavar="DIR|URI",
                        help="where the job's --clean-source archive moved loaded files")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    report = read_or_report(lambda cursor: reconcile(cursor, args.archive_dir))
    if report is None:
        return 2
    if args.json:
        print(json.dumps({"files_checked": report.files, "ok": not report.problems,
                          "checked_on_disk": report.checked_on_disk,
                          "not_on_disk": report.not_on_disk,
                          "quarantined": report.quarantined, "problems": report.problems}))
    else:
        for problem in report.problems:
            print(printable_name(problem))
        for name in report.quarantined:
            print(f"{printable_name(name)}: quarantined as a whole (see"
                  " ingest_files.status_reason)")
        print(f"{report.files} file(s) checked: "
              + ("every row accounted for" if not report.problems
                 else f"{len(report.problems)} problem(s)")
              + f"; {report.checked_on_disk} compared with their bytes on disk,"
                f" {len(report.not_on_disk)} no longer on disk")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
