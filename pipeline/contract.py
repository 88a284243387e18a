"""What the stages agree on: the event record, the reason codes, the source files' names, the
states of a line, and the payload a batch hands from the checks to the database.

Every stage imports this module and nothing imports a stage from here; it needs no Spark,
so the generator and the tools load it without starting a JVM.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from hashlib import sha256
from pathlib import Path

# -- the event record -----------------------------------------------------------------------
EVENT_FIELDS = ("event_id", "user_id", "product_id", "event_type", "price", "event_time")
DEFAULT_EVENT_TYPES = ("view", "add_to_cart", "purchase", "remove_from_cart")
# Column widths of the `events` table (sql/001_schema.sql); longer values are rejected, not cut.
MAX_LENGTHS = {"event_id": 64, "user_id": 64, "product_id": 64, "event_type": 32}
# DECIMAL(12,2): ten digits before the point, at most two after.
PRICE_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"

# -- source files ---------------------------------------------------------------------------
SOURCE_GLOB = "events_*.csv"
# Written into a local checkpoint folder by the running job, read by `pipeline.ops.status`.
HEARTBEAT_FILE = "_pipeline_heartbeat.json"
# A line (or a quoted record over several lines) longer than this cannot be an event: the
# widest valid event is a few hundred bytes. Longer lines are rejected as too long.
LINE_MAX_BYTES = 16 * 1024
# A line's state, the second item of each (text, state) line (True and False stand for the
# first two, as Spark's is_valid_utf8 gives them).
LINE_BAD_UTF8, LINE_OK, LINE_TOO_LONG = 0, 1, 2
# Added to a state when the line ended with \r\n or a lone \r (no flag: \n, or no end): a
# quoted field that holds line ends keeps them as written. Readers that cannot tell (Spark's
# text source drops line ends) give no flag, and such a field holds \n.
LINE_END_CRLF, LINE_END_CR = 4, 8
LINE_STATE_MASK = 3

# -- names as printed and recorded ------------------------------------------------------------
# What must not reach a log line or a terminal as it is: C0 controls (a newline would start
# a forged log line, ESC a terminal sequence), DEL, C1 controls, Unicode line and paragraph
# separators, bidirectional overrides, and lone surrogates: Python's surrogateescape form of
# a name's bytes that are not UTF-8 (os.listdir gives b"caf\xe9" as "caf\udce9").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # the byte surrogateescape stands for
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable_name(name: str) -> str:
    """`name` safe to print on one line: every character above as a backslash escape
    (newline \\x0a, ESC \\x1b, U+2028 \\u2028, the byte 0xE9 of a Latin-1 name \\xe9).
    Everything else, a backslash included, is kept, so printing twice changes nothing."""
    return _UNPRINTABLE.sub(_escaped, name)


def is_utf8_name(name: str) -> bool:
    """False for a name (from os.listdir) whose bytes are not UTF-8: Spark never lists it,
    and no UTF-8 column can hold it as it is."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def recorded_name(name: str) -> str:
    """The name `ingest_files` holds: the name itself, or, when its bytes are not UTF-8,
    its printable form (and `FilePayload.name_bytes` keeps the bytes for its key)."""
    return name if is_utf8_name(name) else printable_name(name)


# -- a local file's identity in ingest_files -------------------------------------------------
def ledger_name(path: Path) -> str:
    """The name `ingest_files` gives a local file: `file:` and its path, as the job decodes
    Spark's URI (bytes that are not UTF-8 become U+FFFD)."""
    return "file:" + os.fsencode(path).decode("utf-8", "replace")


def ledger_key(name: str) -> str:
    """`FilePayload.key` of a file name: its key in `ingest_files`."""
    return sha256(name.encode("utf-8")).hexdigest()


# -- what a record becomes, and why ------------------------------------------------------------
KIND_EVENT, KIND_REJECTED, KIND_HEADER, KIND_BLANK = "event", "rejected", "header", "blank"
# A chunk kind from Spark tasks: the file is refused as a whole, payload JSON [reason, detail].
KIND_REFUSED = "refused"
# Reason codes of events_rejected.reason for one record, in the order they are checked.
REJECT_REASONS = (
    "line_too_long",
    "invalid_utf8",
    "broken_quoting",
    "wrong_column_count",
    "missing_event_id",
    "missing_user_id",
    "missing_product_id",
    "field_too_long",
    "unknown_event_type",
    "bad_price",
    "negative_price",
    "bad_event_time",
    "check_failed",
)
# Reason codes for a file quarantined as a whole (ingest_files.status_reason).
FILE_REASONS = ("symlink", "not_a_regular_file", "unreadable", "changed_while_read",
                "database_rejected", "bad_header", "bad_file_name")
FILE_LOADED, FILE_MISSING, FILE_QUARANTINED = "loaded", "missing", "quarantined"

# How a chunk of checked events is written: JSON for INSERT ... JSON_TABLE, TSV for LOAD DATA.
EVENTS_JSON, EVENTS_TSV = "json", "tsv"
# A reject chunk is a JSON array of [line_number, reason, detail, raw_line] rows.
REJECT_ROW_REASON = 1


# -- payload types ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FileFacts:
    """What was read of a file: the figures reconcile checks against the file later."""

    size: int
    lines: int
    sha256: str


@dataclass
class FilePayload:
    """One source file of a batch: its checked rows as chunks of text, ready for the sink.

    `facts` are the size, lines and hash of what was read (local files). A quarantined file
    keeps no rows: `reason` and `detail` say why it was refused as a whole.
    """

    source_file: str
    modified_at: datetime | None
    status: str = FILE_LOADED
    rows_valid: int = 0
    rows_rejected: int = 0
    event_chunks: list[str] = field(default_factory=list)
    reject_chunks: list[str] = field(default_factory=list)
    facts: FileFacts | None = None
    reason: str | None = None
    detail: str | None = None
    # reason -> rejected rows (the job's metrics); a quarantined file counts once, whole.
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    # The name's own bytes when they are not UTF-8 (`source_file` holds them escaped): its
    # key comes from them, so it never equals the key of a file whose name is that escape.
    name_bytes: bytes | None = None

    @property
    def key(self) -> str:
        """The file's identity in `ingest_files`, whatever happens to the checkpoint."""
        return sha256(self.name_bytes or self.source_file.encode("utf-8")).hexdigest()

    def count(self, kind: str, rows: int, text: str) -> None:
        """Count a chunk of `rows` rows of `kind`; a reject chunk's reasons are tallied."""
        if kind == KIND_EVENT:
            self.rows_valid += rows
            return
        self.rows_rejected += rows
        for row in json.loads(text):
            reason = row[REJECT_ROW_REASON]
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1

    def add(self, kind: str, rows: int, text: str) -> None:
        self.count(kind, rows, text)
        (self.event_chunks if kind == KIND_EVENT else self.reject_chunks).append(text)

    def mark_missing(self) -> None:
        self.drop_rows()
        self.status = FILE_MISSING

    def quarantine(self, reason: str, detail: str) -> None:
        """Refuse the whole file: none of its rows is written, the reason is recorded."""
        self.drop_rows()
        self.status, self.reason, self.detail = FILE_QUARANTINED, reason, detail[:512]
        self.rejected_by_reason = {reason: 1}

    def drop_rows(self) -> None:
        self.rows_valid = self.rows_rejected = 0
        self.event_chunks, self.reject_chunks = [], []
        self.rejected_by_reason = {}

    def reset(self) -> None:
        """As before the file was read: to read it again."""
        self.drop_rows()
        self.status, self.reason, self.detail, self.facts = FILE_LOADED, None, None, None


@dataclass
class BatchPayload:
    """Everything one micro-batch writes."""

    query_id: str
    batch_id: int
    files: list[FilePayload]
    started_at: datetime
    prepare_ms: int

    def only(self, files: list[FilePayload]) -> BatchPayload:
        """The same batch holding only `files`."""
        return BatchPayload(self.query_id, self.batch_id, files, self.started_at,
                            self.prepare_ms)


@dataclass(frozen=True)
class BatchResult:
    """What the database now holds for a batch."""

    replayed: bool
    rows_written: int = 0
    rows_duplicate: int = 0
    files_skipped: int = 0
    attempts: int = 1
    db_ms: int = 0
    # Keys of the files skipped because an earlier batch loaded them: not written again.
    skipped_keys: frozenset[str] = frozenset()


# (source_file, kind, rows, payload): one chunk of a file's checked rows, as streamed.
Chunk = tuple[str, str, int, str]


class CommitHooks:
    """Called around each transaction's COMMIT (and a checkpoint rotation). The job passes
    none; the crash tests pass one that kills the job at the moments that matter: before
    the transaction reached the database, after it committed but before Spark recorded the
    batch, and in the middle of a rotation."""

    def before_commit(self, batch_id: int) -> None:
        """Right before the batch's last statements and COMMIT are sent."""

    def after_commit(self, batch_id: int) -> None:
        """Right after COMMIT returned."""

    def at_rotation(self, stage: str, generation: int) -> None:
        """During a checkpoint rotation: `switched` right after generation `generation`
        became current (before its query starts), `retiring` after the first entry of
        the earlier generations was removed."""
