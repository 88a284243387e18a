"""Stream event CSV files from a folder into MySQL, each event exactly once.

Reads new `events_*.csv` files from --source (default streaming_data/), checks every row,
and writes each micro-batch to MySQL in one transaction together with its ledger row:
valid rows to `events`, bad rows to `events_rejected` with a reason, per-file counts to
`ingest_files`. Kill it at any moment and start it again with the same --checkpoint:
nothing is lost and nothing is written twice.

Usage:
    python spark_streaming.py [--source DIR] [--checkpoint DIR] [--once] ...
    spark-submit spark_streaming.py [same flags]        (Spark's own --master, --conf ...)

Database settings come from the environment or `.env` (see `.env.example`):
MYSQL_HOST, MYSQL_PORT, MYSQL_DATABASE, MYSQL_USER, MYSQL_PASSWORD, MYSQL_SSL_MODE,
MYSQL_SSL_CA, JDBC_DRIVER_JAR, JDBC_DRIVER_CLASS.

Exit codes: 0 drained (--once) or stopped by Ctrl-C/SIGTERM, 1 stopped by an error,
2 bad configuration, the database/driver cannot be used, or another job holds the
checkpoint.
"""

from __future__ import annotations

import sys

from pipeline.job.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main(prog="spark_streaming.py"))
