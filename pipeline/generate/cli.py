"""The generator's command line and its write loop: a file every --interval seconds until
--files are written or a signal stops it, with a one-line summary at the end."""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from pipeline.cli import add_version
from pipeline.generate.events import DEFAULT_EVENTS_PER_FILE
from pipeline.generate.events import DEFAULT_INTERVAL
from pipeline.generate.events import DEFAULT_NULL_USER_RATE
from pipeline.generate.events import DEFAULT_OUTPUT_DIR
from pipeline.generate.events import DEFAULT_PRODUCTS
from pipeline.generate.events import DEFAULT_USERS
from pipeline.generate.events import EventFactory
from pipeline.generate.events import file_name_for
from pipeline.generate.events import parse_start_time
from pipeline.generate.events import write_events_file


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of one generator run (the CLI flags)."""

    output_dir: Path = Path(DEFAULT_OUTPUT_DIR)
    interval: float = DEFAULT_INTERVAL
    events_per_file: int = DEFAULT_EVENTS_PER_FILE
    files: int = 0
    seed: int | None = None
    null_user_rate: float = DEFAULT_NULL_USER_RATE
    users: int = DEFAULT_USERS
    products: int = DEFAULT_PRODUCTS
    start_time: datetime | None = None
    quiet: bool = False


@dataclass
class RunSummary:
    """What a run wrote, and why it ended (`stopped_by` is a signal name or None)."""

    files: int = 0
    events: int = 0
    events_without_user: int = 0
    elapsed: float = 0.0
    stopped_by: str | None = None

    def line(self) -> str:
        """One-line summary for the console."""
        reason = f" (stopped by {self.stopped_by})" if self.stopped_by else ""
        return (f"summary: {self.files} files, {self.events} events,"
                f" {self.events_without_user} without user_id,"
                f" {self.elapsed:.1f}s elapsed{reason}")


class Stopped(BaseException):
    """Raised by the SIGTERM handler; a BaseException so no `except Exception` swallows it."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


def run(config: GeneratorConfig, out: TextIO | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RunSummary:
    """Write files until `config.files` are done or Ctrl-C/SIGTERM; print a line per file.

    Args:
        config: The run's settings; `output_dir` is created if missing.
        out: Where progress and the summary go (default: stdout).
        clock: Source of the current UTC time (names and, without a start time, event times).

    Returns:
        The run's summary (also printed). A stop by signal is a normal end, not an error.

    Raises:
        OSError: if the folder cannot be created or a file cannot be written.
    """
    out = out if out is not None else sys.stdout
    factory = EventFactory(config.seed, config.users, config.products, config.null_user_rate,
                           config.start_time, config.interval)
    folder = Path(config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # Random even with a seed: it exists to keep concurrent runs' names apart.
    run_id = secrets.token_hex(2)
    summary = RunSummary()
    started = time.monotonic()
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous_int = signal.getsignal(signal.SIGINT)
        previous_term = signal.signal(signal.SIGTERM, _raise_stopped)
    pending: tuple[Path, list[dict]] | None = None
    try:
        seq = 0
        last_stamp: datetime | None = None
        next_due = time.monotonic()
        while config.files == 0 or seq < config.files:
            seq += 1
            now = clock()
            # Strictly increasing stamps keep names in write order even if the clock steps back.
            if last_stamp is not None and now <= last_stamp:
                now = last_stamp + timedelta(microseconds=1)
            last_stamp = now
            events = factory.make_events(config.events_per_file, seq - 1, now)
            name = file_name_for(now, seq, run_id)
            pending = (folder / name, events)
            path = write_events_file(folder, events, name)
            _count(summary, events)
            pending = None
            if not config.quiet:
                without = sum(1 for e in events if not e["user_id"])
                _say(out, f"wrote {path} ({len(events)} events, {without} without user_id)")
            if config.files and seq >= config.files:
                break
            # Fixed schedule (no drift from write time), but no catch-up burst after a stall.
            next_due = max(next_due + config.interval, time.monotonic())
            time.sleep(max(0.0, next_due - time.monotonic()))
    except (KeyboardInterrupt, Stopped) as stop:
        if in_main_thread:
            # A second Ctrl-C/TERM must not cut the clean-up and summary short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        summary.stopped_by = str(stop) if isinstance(stop, Stopped) else "SIGINT"
        # The signal may land after the rename but before the count: the file is complete.
        if pending is not None and pending[0].exists():
            _count(summary, pending[1])
    finally:
        if in_main_thread:
            # None means a handler installed outside Python, which cannot be put back.
            for signum, previous in ((signal.SIGTERM, previous_term),
                                     (signal.SIGINT, previous_int)):
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    summary.elapsed = time.monotonic() - started
    _say(out, summary.line())
    return summary


def _count(summary: RunSummary, events: list[dict]) -> None:
    summary.files += 1
    summary.events += len(events)
    summary.events_without_user += sum(1 for e in events if not e["user_id"])


def _say(out: TextIO, text: str) -> None:
    try:
        print(text, file=out, flush=True)
    except BrokenPipeError:
        pass  # a closed pipe (e.g. `| head`) must not turn into an error


# -- command line ---------------------------------------------------------------------------

def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value


def _start_time(text: str) -> datetime:
    try:
        return parse_start_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO-8601 time like 2026-01-31T12:00:00Z: {text!r}") from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write CSV files of synthetic e-commerce events for the streaming job.")
    parser.add_argument("--output-dir", type=Path, default=Path(DEFAULT_OUTPUT_DIR),
                        metavar="DIR", help="folder to write into, created if missing"
                                            " (default: %(default)s)")
    parser.add_argument("--interval", type=_non_negative_seconds, default=DEFAULT_INTERVAL,
                        metavar="SECONDS",
                        help="seconds between files, 0 = as fast as possible"
                             " (default: %(default)g)")
    parser.add_argument("--events-per-file", type=_non_negative_int,
                        default=DEFAULT_EVENTS_PER_FILE, metavar="N",
                        help="events per file (default: %(default)s)")
    parser.add_argument("--files", type=_non_negative_int, default=0, metavar="COUNT",
                        help="stop after COUNT files, 0 = until Ctrl-C/SIGTERM"
                             " (default: %(default)s)")
    parser.add_argument("--seed", type=_int, default=None, metavar="S",
                        help="seed for reproducible output (event times still follow the"
                             " clock unless --start-time is given)")
    parser.add_argument("--null-user-rate", type=_rate, default=DEFAULT_NULL_USER_RATE,
                        metavar="R", help="share of events with an empty user_id, 0..1"
                                          " (default: %(default)s)")
    parser.add_argument("--users", type=_positive_int, default=DEFAULT_USERS, metavar="N",
                        help="number of distinct users (default: %(default)s)")
    parser.add_argument("--products", type=_positive_int, default=DEFAULT_PRODUCTS,
                        metavar="N", help="number of distinct products (default: %(default)s)")
    parser.add_argument("--start-time", type=_start_time, default=None, metavar="ISO",
                        help="event time of the first file (e.g. 2026-01-31T12:00:00Z); file k"
                             " is at START + k*interval, making event times deterministic")
    parser.add_argument("--quiet", action="store_true",
                        help="no line per file, only the summary")
    add_version(parser)
    return parser


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> GeneratorConfig:
    """Parse and check the command line; exits with an argparse error on bad input.

    The output folder is created and probed here, so an unwritable one is a usage error
    rather than a failure after the run has started.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        # Probe by writing (os.access says yes to root even on read-only mounts); the dot
        # keeps the probe invisible to the job.
        probe = args.output_dir / f".write_probe_{os.getpid()}_{secrets.token_hex(4)}"
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as e:
        parser.error(f"argument --output-dir: cannot write to {str(args.output_dir)!r}:"
                     f" {e.strerror or e}")
    return GeneratorConfig(**vars(args))


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the generator with command-line arguments `argv` (default: sys.argv[1:])."""
    try:
        config = parse_args(argv, prog=prog)
    except SystemExit as e:  # argparse: --help, --version or a usage error, already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        run(config)
    except OSError as e:
        print(f"{prog or 'events-generator'}: error: {e}", file=sys.stderr)
        return 1
    return 0
