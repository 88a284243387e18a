"""Draw latency, throughput and rejected rows over time from the batch ledger, as a PNG.

Usage:
    python -m pipeline.ops.chart [--output pipeline.png] [--hours 24]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The object API draws to a file without a display or pyplot's global state.
from matplotlib.figure import Figure

from pipeline.cli import tool_parser
from pipeline.report.db import read_or_report


def fetch_batches(cursor, hours: float) -> list[tuple]:
    """(committed_at, latency_s, rows_read, rows_rejected) per batch, oldest first."""
    cursor.execute(
        "SELECT committed_at, TIMESTAMPDIFF(MICROSECOND, newest_file_at, committed_at) / 1e6,"
        " rows_read, rows_rejected FROM ingest_batches"
        " WHERE committed_at >= UTC_TIMESTAMP(6) - INTERVAL %s SECOND ORDER BY committed_at",
        (int(hours * 3600),))
    return cursor.fetchall()


def throughput(batches: list[tuple]) -> list[float]:
    """Rows read per second between consecutive commits, one figure per batch (the first
    batch has no commit before it: 0)."""
    rates = [int(b[2]) / max((b[0] - a[0]).total_seconds(), 1e-3)
             for a, b in zip(batches, batches[1:])]
    return [0.0] + rates if batches else []


def draw(batches: list[tuple], output: Path) -> None:
    """Three stacked panels sharing the time axis."""
    times = [b[0] for b in batches]
    fig = Figure(figsize=(10, 8))
    latency, rate, rejected = fig.subplots(3, 1, sharex=True)
    fig.suptitle("events pipeline: one point per committed micro-batch (UTC)")
    latency.plot(times, [float(b[1] or 0) for b in batches], ".-", color="tab:blue")
    latency.set_ylabel("latency (s)\nnewest file → commit")
    rate.plot(times, throughput(batches), ".-", color="tab:green")
    rate.set_ylabel("throughput\n(rows read / s)")
    rejected.bar(times, [int(b[3]) for b in batches], width=0.0002, color="tab:red")
    rejected.set_ylabel("rejected rows\nper batch")
    rejected.set_ylim(bottom=0)
    rejected.set_xlabel("commit time")
    for axis in (latency, rate, rejected):
        axis.grid(alpha=0.3)
    if not batches:
        latency.text(0.5, 0.5, "no batches committed in this window", ha="center",
                     transform=latency.transAxes)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(output, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = tool_parser("pipeline.ops.chart", __doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("pipeline.png"),
                        help="PNG file to write (default pipeline.png; its folder must exist)")
    parser.add_argument("--hours", type=float, default=24.0, help="how far back (default 24)")
    args = parser.parse_args(argv)
    folder = args.output.parent
    if not folder.is_dir():
        print(f"chart: the folder {folder} does not exist: create it or give another --output",
              file=sys.stderr)
        return 2
    batches = read_or_report(lambda cursor: fetch_batches(cursor, args.hours))
    if batches is None:
        return 2
    try:
        draw(batches, args.output)
    except OSError as e:
        print(f"chart: cannot write {args.output} ({e.strerror}): give a writable --output",
              file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(batches)} batches)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
