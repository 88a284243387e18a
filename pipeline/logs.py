"""How the job and the tools log: the date, the time to the millisecond, the level and the
logger's name on every line, or one JSON object per line for a log collector."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime

from pipeline.contract import printable_name

TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (ISO 8601 with its UTC offset), level, logger,
    message, and the traceback's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created).astimezone().isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class PrintableArgs(logging.Filter):
    """Every text put into a log line through %s printed escaped (pipeline.contract's
    printable_name): a file or folder name holding a newline cannot start a line of its own.
    The log sites escape the names they print already; this holds for the ones to come."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(printable_name(a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send the root logger to stderr in `log_format` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, TEXT_DATE_FORMAT))
    handler.addFilter(PrintableArgs())
    # force: under spark-submit something may have configured the root logger already.
    logging.basicConfig(level=level, handlers=[handler], force=True)
