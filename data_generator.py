"""Write CSV files of synthetic e-commerce events into a folder the streaming job watches.

Usage:
    python data_generator.py                      # 21 events every 20 s into streaming_data/
    python data_generator.py --interval 0 --files 5 --seed 7 --start-time 2026-01-31T12:00:00Z
    python data_generator.py --output-dir DIR --interval SECONDS --events-per-file N
                             --files COUNT --seed S --null-user-rate R
                             [--users N] [--products N] [--start-time ISO] [--quiet]

Files are named events_<yyyymmddThhmmss_ffffff>Z_<seq>_<run id>.csv (UTC) and appear
atomically. One line per file goes to stdout, and a summary on exit; Ctrl-C or SIGTERM ends
the run normally (exit code 0). Bad arguments exit with code 2, write errors with code 1.
"""

from __future__ import annotations

import sys

from pipeline.generate.cli import main as generator_main

PROG = "data_generator.py"


def main(argv: list[str] | None = None) -> int:
    """Run the generator with command-line arguments `argv` (default: sys.argv[1:])."""
    return generator_main(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
