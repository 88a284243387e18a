"""Spark's side of reading: the streaming file source, and a batch's lines as Spark tasks see
them, cut and flagged exactly as the local reader (`pipeline.read.local`) does."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from urllib.parse import unquote
from urllib.parse import urlsplit

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipeline.contract import LINE_BAD_UTF8
from pipeline.contract import LINE_MAX_BYTES
from pipeline.contract import LINE_OK
from pipeline.contract import LINE_TOO_LONG
from pipeline.contract import SOURCE_GLOB
from pipeline.errors import JobError

log = logging.getLogger(__name__)

# Hadoop's glob characters, escaped with a backslash to name a file literally.
_GLOB_CHARACTERS = re.compile(r"([\\*?\[\]{}])")
LINES_SCHEMA = "source_file string, value string"

# Java's Long.MaxValue: the largest maxFileAge Spark parses (milliseconds).
NEVER_FORGET_MS = 2**63 - 1


def read_lines(spark: SparkSession, source: str, files_per_trigger: int,
               clean_source: str = "off", archive_dir: str | None = None) -> DataFrame:
    """The file source: new `events_*.csv` files as raw lines with their file's path.

    Only the file list is used for local files (the driver reads them itself); Spark reads
    the lines for hdfs://, s3a:// and the like.
    """
    reader = (
        spark.readStream.format("text")
        .option("pathGlobFilter", SOURCE_GLOB)
        .option("maxFilesPerTrigger", files_per_trigger)
        # Spark forgets, and never lists again, files older than the newest modification
        # time it has seen minus maxFileAge (a week by default; FileStreamSource's
        # SeenFilesMap). One file dated in the future would hide every later file, a file
        # copied with its old date would never be read. Long.MaxValue, as Spark itself uses
        # with latestFirst: its newest time starts at 0 and only grows, so the subtraction
        # cannot overflow and no file time a file system holds falls below the limit.
        .option("maxFileAge", f"{NEVER_FORGET_MS}ms")
    )
    if clean_source != "off":
        # Spark moves or deletes a batch's files once the next batch is planned, so only
        # files whose batch is committed in the checkpoint (and so in MySQL) go.
        reader = reader.option("cleanSource", clean_source)
        if archive_dir:
            reader = reader.option("sourceArchiveDir", archive_dir)
    return (reader.load(source)
            .select(F.col("_metadata.file_path").alias("source_file"), F.col("value")))


def raw_lines(batch: DataFrame) -> DataFrame:
    """(source_file, value, state): invalid UTF-8 replaced and too long lines cut, with the
    line's state for the rules (LINE_OK, LINE_BAD_UTF8, LINE_TOO_LONG)."""
    too_long = F.octet_length("value") > LINE_MAX_BYTES
    valid = F.make_valid_utf8("value")
    return batch.select(
        "source_file",
        F.when(too_long, F.substring(valid, 1, LINE_MAX_BYTES + 1)).otherwise(valid)
        .alias("value"),
        F.when(too_long, F.lit(LINE_TOO_LONG)).when(F.is_valid_utf8("value"), F.lit(LINE_OK))
        .otherwise(F.lit(LINE_BAD_UTF8)).alias("state"),
    )


def hadoop_path(uri: str) -> str:
    """The path Hadoop opens for a URI of the file source's log (percent-decoded)."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"


def uri_exists(spark: SparkSession, uri: str) -> bool:
    """Whether the file a percent-encoded URI names is there (any Hadoop file system)."""
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri))
    return path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(path)


def read_files(spark: SparkSession, uris: list[str]) -> DataFrame:
    """The lines of exactly these files, each read once, as (source_file, value).

    Not the micro-batch's own DataFrame: Spark builds that from the same list but takes
    every path as a glob, so a name holding `?` or `#` has other files of the folder read
    a second time. Here each path is escaped to name one file. A file already gone is left
    out (it is recorded missing), asked for only when Spark says one is gone; one that goes
    after the listing is skipped by spark.sql.files.ignoreMissingFiles.
    """
    for _ in range(3):
        if not uris:
            break
        try:
            lines = spark.read.format("text").load(
                [_GLOB_CHARACTERS.sub(r"\\\1", hadoop_path(uri)) for uri in uris])
        except AnalysisException as e:
            if "PATH_NOT_FOUND" not in str(e):
                raise
            uris = [uri for uri in uris if uri_exists(spark, uri)]
            continue
        return lines.select(F.col("_metadata.file_path").alias("source_file"), F.col("value"))
    return spark.createDataFrame([], LINES_SCHEMA)


@dataclass(frozen=True)
class ListedFile:
    """A file found under a Hadoop folder, its URIs spelled as Spark spells them
    (percent-encoded); `first_uri` is where an archived file was before it was moved."""

    uri: str
    size: int
    modified_ms: int
    first_uri: str | None = None


def list_event_files(spark: SparkSession, folder: str, archive: bool) -> list[ListedFile]:
    """Every event file under a Hadoop folder (s3a://, hdfs://), searched recursively.

    An archive of Spark's cleanSource holds each file under the archive's root + the path
    it had, in the same file system: with `archive`, each file's `first_uri` is that path.
    """
    try:
        return _list_under(spark, folder, archive)
    except Py4JJavaError as e:
        first = str(e.java_exception).strip().splitlines()[0]
        raise JobError(f"cannot list {folder}: {first}. Check the URI, the credentials and"
                       " the connector given in PYSPARK_SUBMIT_ARGS") from None


def _list_under(spark: SparkSession, folder: str, archive: bool) -> list[ListedFile]:
    jvm = spark._jvm
    new_path = jvm.org.apache.hadoop.fs.Path
    root = new_path(folder)
    fs = root.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(root):
        # An object store has no folders: a prefix without objects is not there at all.
        log.warning("%s holds no files", folder)
        return []
    if not fs.getFileStatus(root).isDirectory():
        raise JobError(f"{folder} is a file, not a folder: give the URI of the job's"
                       " --archive-dir or --source")
    root_path = fs.makeQualified(root).toUri().getPath().rstrip("/")
    found = []
    listing = fs.listFiles(root, True)
    while listing.hasNext():
        status = listing.next()
        path = status.getPath()
        if not fnmatch(path.getName(), SOURCE_GLOB):
            continue
        uri = path.toUri()
        first = None
        if archive:
            # cleanSource's layout: the archive's root, then the file's own path.
            first = new_path(uri.getScheme(), uri.getAuthority(),
                             uri.getPath().removeprefix(root_path)).toUri().toString()
        found.append(ListedFile(uri.toString(), status.getLen(), status.getModificationTime(),
                                first))
    return found
