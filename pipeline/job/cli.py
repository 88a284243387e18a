"""The streaming job's command line: its flags, checked, then `run` (spark_streaming.py and
the `events-pipeline` command both start here). What the job does: `spark_streaming.py`."""

from __future__ import annotations

import argparse
import logging
import math

from pipeline.cli import add_version
from pipeline.config import load_settings
from pipeline.contract import CommitHooks
from pipeline.errors import PipelineError
from pipeline.job.options import ROTATE_FILES
from pipeline.job.options import JobOptions
from pipeline.job.routes import DRIVER_BATCH_MAX_BYTES
from pipeline.job.run import run
from pipeline.logs import LOG_FORMATS
from pipeline.logs import configure_logging

JAVA_INT_MAX = 2**31 - 1
MAX_TRIGGER_S = 86400
DESCRIPTION = "Stream event CSV files from a folder into MySQL, each event exactly once."


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
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
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="the job's log lines: text (date, time, level, logger, message)"
                             " or json (one object per line; default: %(default)s)")
    parser.add_argument("--prometheus", action="store_true",
                        help="serve Spark's Prometheus metrics on the Spark UI port"
                             " (/metrics/prometheus, /metrics/executors/prometheus)")
    add_version(parser)
    args = parser.parse_args(argv)
    # Spark takes maxFilesPerTrigger as a Java int when the query starts: a bigger
    # --catch-up-files would fail only once a backlog makes the job switch to it.
    if not 1 <= args.max_files_per_trigger <= JAVA_INT_MAX:
        parser.error(f"--max-files-per-trigger must be 1..{JAVA_INT_MAX}")
    if args.catch_up_files > JAVA_INT_MAX:
        parser.error(f"--catch-up-files must be at most {JAVA_INT_MAX}")
    # Spark parses the interval as text: nan, inf and 1e-05 would fail the query's start.
    if not math.isfinite(args.trigger_interval) or not (
            args.trigger_interval == 0 or 0.001 <= args.trigger_interval <= MAX_TRIGGER_S):
        parser.error(f"--trigger-interval must be 0 or 0.001..{MAX_TRIGGER_S} seconds")
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


def main(argv: list[str] | None = None, hooks: CommitHooks | None = None,
         prog: str | None = None) -> int:
    """Run the job; `hooks` are for tests that need to act at a chosen moment of a commit."""
    args = parse_args(argv, prog)
    configure_logging(args.log_format)
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

