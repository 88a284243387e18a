"""Is it working, how far behind, how fast, what was rejected: answered from the database.

Usage:
    python -m pipeline.ops.status [--source DIR] [--checkpoint DIR] [--json] [--brief]
                              [--stale-after SECONDS]

Exit code 0 when healthy; 1 when files wait but nothing was committed for --stale-after
seconds, the job is not running while files wait, files wait that no run will take, the
heartbeat is damaged, or --source or --checkpoint does not exist; 2 when the database cannot
be read. A file waits when `ingest_files` does not hold it, whatever its modification time.
The figures: `pipeline.report.status`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline.cli import tool_parser
from pipeline.job.folder import spark_spelling
from pipeline.job.generations import files_logged
from pipeline.job.generations import generation_folder
from pipeline.job.generations import read_generation
from pipeline.job.options import local_path
from pipeline.report.db import read_or_report
from pipeline.report.status import collect_status
from pipeline.report.status import render
from pipeline.report.status import render_brief


def checkpoint_facts(checkpoint: Path | None) -> tuple[int | None, str | None, int | None]:
    """(generation, its folder, files in its log); Nones when there is no readable one."""
    if checkpoint is None or not checkpoint.is_dir():
        return None, None, None
    try:
        generation = read_generation(checkpoint)
    except ValueError:
        return None, None, None
    folder = generation_folder(checkpoint, generation)
    return generation, str(folder), files_logged(folder)


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("pipeline.ops.status", __doc__.split("\n\n")[0])
    parser.add_argument("--source", default="streaming_data",
                        help="the job's source folder (default: %(default)s)")
    parser.add_argument("--checkpoint", default="checkpoints",
                        help="the job's checkpoint folder (default: %(default)s)")
    parser.add_argument("--stale-after", type=float, default=120.0, metavar="SECONDS",
                        help="unhealthy when files wait and no commit for this long")
    parser.add_argument("--recent", type=int, default=10, metavar="N",
                        help="batches to list (default: %(default)s)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--brief", action="store_true", help="one line")
    args = parser.parse_args(argv)
    source, checkpoint = spark_spelling(args.source), local_path(args.checkpoint)
    status = read_or_report(lambda cursor: collect_status(
        cursor, source, checkpoint, args.stale_after, checkpoint_facts(checkpoint)))
    if status is None:
        return 2
    if args.json:
        print(json.dumps(asdict(status), indent=2, default=str))
    elif args.brief:
        print(render_brief(status))
    else:
        print(render(status, args.recent))
    return 0 if status.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
