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

import argparse
import logging
import sys

from pipeline.config import load_settings
from pipeline.contract import CommitHooks
from pipeline.errors import PipelineError
from pipeline.job.options import ROTATE_FILES
from pipeline.job.options import JobOptions
from pipeline.job.routes import DRIVER_BATCH_MAX_BYTES
from pipeline.job.run import run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="streaming_data",
                        help="folder (or URI) the generator writes to (default: %(default)s)")
    parser.add_argument("--checkpoint", default="checkpoints",
                        help="Spark checkpoint folder (or URI) (default: %(default)s)")
    parser.add_argument("--max-files-per-trigger", type=int, default=1, metavar="N",
                        help="files per micro-batch (default: %(default)s)")
    parser.add_argument("--once", action="store_true",
                        help="process every file present, then exit 0 (availableNow trigger)")
    parser.add_argument("--trigger-interval", type=float, default=0.0, metavar="SECONDS",
                        help="start a micro-batch at most this often; 0 = as soon as the"
                             " previous one ends (default: %(default)s)")
    parser.add_argument("--catch-up-files", type=int, default=0, metavar="N",
                        help="while more than 10 files wait (at start, or checked every 10 s),"
                             " take up to N files per micro-batch until the backlog is gone;"
                             " 0 = off (default: %(default)s)")
    parser.add_argument("--driver-batch-max-bytes", type=int, default=DRIVER_BATCH_MAX_BYTES,
                        metavar="BYTES",
                        help="batches of local files up to this size are checked on the"
                             " driver in one go, bigger ones streamed: checked chunk by chunk"
                             " while the database writes; 0 = always Spark tasks"
                             " (default: %(default)s)")
    parser.add_argument("--clean-source", choices=("off", "archive", "delete"), default="off",
                        help="after a file's batch is committed, move it to --archive-dir or"
                             " delete it (Spark's cleanSource; default: %(default)s)")
    parser.add_argument("--archive-dir", metavar="DIR",
                        help="where --clean-source archive moves loaded files (outside"
                             " --source)")
    parser.add_argument("--checkpoint-rotate-files", type=int, default=ROTATE_FILES,
                        metavar="N",
                        help="when the checkpoint's file log holds more than N files, go on"
                             " in a fresh checkpoint folder (a new generation) and remove the"
                             " old one; 0 = never (default: %(default)s)")
    parser.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                        help="serve the job's own metrics (rows, rejects, batch latency,"
                             " backlog) in Prometheus format on 127.0.0.1:PORT/metrics;"
                             " 0 = off (default: %(default)s)")
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDRESS",
                        help="address the metrics endpoint listens on (default: %(default)s;"
                             " anything else exposes it beyond this machine)")
    parser.add_argument("--verbose", action="store_true",
                        help="Spark's INFO logs and its per-trigger durations too")
    parser.add_argument("--prometheus", action="store_true",
                        help="serve Spark's Prometheus metrics on the Spark UI port"
                             " (/metrics/prometheus, /metrics/executors/prometheus)")
    args = parser.parse_args(argv)
    if args.max_files_per_trigger < 1:
        parser.error("--max-files-per-trigger must be at least 1")
    if args.trigger_interval < 0:
        parser.error("--trigger-interval must not be negative")
    if args.driver_batch_max_bytes < 0:
        parser.error("--driver-batch-max-bytes must not be negative")
    if args.catch_up_files < 0:
        parser.error("--catch-up-files must not be negative")
    if args.checkpoint_rotate_files < 0:
        parser.error("--checkpoint-rotate-files must not be negative")
    if not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be a TCP port (1-65535) or 0 for off")
    if args.clean_source == "archive" and not args.archive_dir:
        parser.error("--clean-source archive needs --archive-dir")
    return args


def main(argv: list[str] | None = None, hooks: CommitHooks | None = None) -> int:
    """Run the job; `hooks` are for tests that need to act at a chosen moment of a commit."""
    args = parse_args(argv)
    # force: under spark-submit something may have configured the root logger already.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    if args.verbose:
        logging.getLogger("pipeline").setLevel(logging.DEBUG)
    # py4j logs every callback at INFO, and re-logs each exception raised in a batch; the
    # job logs what matters itself (pipeline.job.batch.BatchWriter).
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("py4j.clientserver").setLevel(logging.CRITICAL)
    options = JobOptions(
        source=args.source,
        checkpoint=args.checkpoint,
        max_files_per_trigger=args.max_files_per_trigger,
        once=args.once,
        trigger_interval_s=args.trigger_interval,
        verbose=args.verbose,
        prometheus=args.prometheus,
        catch_up_files=args.catch_up_files,
        driver_batch_max_bytes=args.driver_batch_max_bytes,
        clean_source=args.clean_source,
        archive_dir=args.archive_dir,
        checkpoint_rotate_files=args.checkpoint_rotate_files,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
    )
    try:
        settings = load_settings()
        for line in settings.describe():
            logging.info("config  %s", line)
        return run(settings, options, hooks)
    except PipelineError as e:
        logging.error("%s", e)
        return 2


if __name__ == "__main__":
    sys.exit(main())
