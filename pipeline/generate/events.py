"""Synthetic e-commerce events written as CSV files for the streaming job to pick up.

Every file appears atomically: it is written under a dot-prefixed temporary name in the same
folder (Spark's file source skips names starting with '.' or '_'), fsync'ed, then renamed to
its final `events_*.csv` name. The job never sees a half-written file, whether the generator
finishes, is stopped with Ctrl-C/SIGTERM (the temporary file is removed) or is killed with -9
(only a harmless dot-file is left behind).

With a seed every value is reproducible except `event_time`, which follows the clock; with a
start time as well, file contents are byte-identical from run to run.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from itertools import accumulate
from pathlib import Path

from faker import Faker

from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.contract import EVENT_FIELDS

DEFAULT_OUTPUT_DIR = "streaming_data"
DEFAULT_INTERVAL = 20.0
DEFAULT_EVENTS_PER_FILE = 21
DEFAULT_NULL_USER_RATE = 0.05
DEFAULT_USERS = 1000
DEFAULT_PRODUCTS = 200

# A browse-heavy funnel: most events are views, few end in a purchase.
EVENT_TYPE_WEIGHTS = {"view": 0.72, "add_to_cart": 0.15, "remove_from_cart": 0.07,
                      "purchase": 0.06}
# Fails at import if the schema gains an event type without a weight here.
_TYPE_WEIGHTS = tuple(EVENT_TYPE_WEIGHTS[t] for t in DEFAULT_EVENT_TYPES)

MIN_PRICE_CENTS, MAX_PRICE_CENTS = 100, 50_000
# A few products are far more popular than the rest (Zipf-like), as in a real shop.
PRODUCT_POPULARITY_EXPONENT = 0.8
# Spread of one file's event times when files are written back to back (--interval 0).
MIN_TIME_SPAN = timedelta(seconds=1)


def format_event_time(moment: datetime) -> str:
    """ISO-8601 UTC with microseconds and a `Z` suffix, e.g. `2026-11-25T03:15:02.123456Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_start_time(text: str) -> datetime:
    """Parse an ISO-8601 time (`Z` or an offset allowed; naive means UTC) into aware UTC.

    Raises:
        ValueError: if `text` is not an ISO-8601 date/time.
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class EventFactory:
    """Makes event rows (dicts of strings keyed by `EVENT_FIELDS`) from a bounded population.

    Args:
        seed: Seed for Faker and every random choice; None for a fresh random run.
        users: Number of distinct users (`user_0001`...).
        products: Number of distinct products (`prod_0001`...), each with a stable price.
        null_user_rate: Share of events, 0..1, whose `user_id` is left empty.
        start_time: If given, file k's events lie in `[start + k*interval, +span)` instead of
            just before the clock's now, which makes the output fully deterministic.
        interval: Seconds between files; the span one file's event times cover.
    """

    def __init__(self, seed: int | None = None, users: int = DEFAULT_USERS,
                 products: int = DEFAULT_PRODUCTS,
                 null_user_rate: float = DEFAULT_NULL_USER_RATE,
                 start_time: datetime | None = None,
                 interval: float = DEFAULT_INTERVAL) -> None:
        if users < 1 or products < 1:
            raise ValueError("users and products must be at least 1")
        if not 0.0 <= null_user_rate <= 1.0:
            raise ValueError(f"null_user_rate must be within 0..1, got {null_user_rate}")
        if not (interval >= 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be a finite number >= 0, got {interval}")
        self._faker = Faker()
        # A per-instance generator: seeding never touches (or depends on) global random state.
        self._faker.seed_instance(seed)
        self._rng = self._faker.random
        self.null_user_rate = null_user_rate
        self.start_time = start_time
        self.interval = timedelta(seconds=interval)
        self.span = max(self.interval, MIN_TIME_SPAN)
        self.user_ids = [f"user_{i:0{max(4, len(str(users)))}d}" for i in range(1, users + 1)]
        self.product_ids = [f"prod_{i:0{max(4, len(str(products)))}d}"
                            for i in range(1, products + 1)]
        self.prices = {pid: self._base_price() for pid in self.product_ids}
        self._product_cum_weights = list(accumulate(
            1.0 / rank ** PRODUCT_POPULARITY_EXPONENT for rank in range(1, products + 1)))

    def _base_price(self) -> str:
        """A price with exactly two decimals, log-uniform so cheap items outnumber dear ones."""
        cents = round(math.exp(self._rng.uniform(math.log(MIN_PRICE_CENTS),
                                                 math.log(MAX_PRICE_CENTS))))
        if self._rng.random() < 0.4:
            # Shop prices like 19.99 are common.
            cents = max(MIN_PRICE_CENTS, cents - cents % 100 - 1)
        return f"{cents // 100}.{cents % 100:02d}"

    def make_events(self, n: int, file_index: int, now: datetime | None = None) -> list[dict]:
        """Make the `n` events of one file, in event-time order.

        Args:
            n: Number of events.
            file_index: 0-based position of the file in this run; places its events in time
                when a start time is set.
            now: The clock's time for this file (default: now); ignored with a start time.

        Returns:
            Rows as dicts of strings keyed by `EVENT_FIELDS`.
        """
        if self.start_time is not None:
            window_start = self.start_time + file_index * self.interval
        else:
            window_start = (now or datetime.now(UTC)) - self.span
        span_us = int(self.span / timedelta(microseconds=1))
        rows = []
        for _ in range(n):
            product_id = (self._rng.choices(self.product_ids,
                                            cum_weights=self._product_cum_weights)[0])
            offset = timedelta(microseconds=self._rng.randrange(span_us))
            rows.append({
                "event_id": self._faker.uuid4(),
                "user_id": ("" if self._rng.random() < self.null_user_rate
                            else self._rng.choice(self.user_ids)),
                "product_id": product_id,
                "event_type": self._rng.choices(DEFAULT_EVENT_TYPES, weights=_TYPE_WEIGHTS)[0],
                "price": self.prices[product_id],
                "event_time": window_start + offset,
            })
        rows.sort(key=lambda row: row["event_time"])
        for row in rows:
            row["event_time"] = format_event_time(row["event_time"])
        return rows


def file_name_for(now: datetime, seq: int, run_id: str = "") -> str:
    """The final name of a file: `events_<UTC yyyymmddThhmmss_ffffff>Z_<seq>[_<run_id>].csv`.

    Names sort in write order within a run (the caller keeps `now` strictly increasing) and
    the run id keeps two generators writing to one folder from ever picking the same name.

    Args:
        now: Time of writing (aware; converted to UTC).
        seq: 1-based sequence number of the file in this run.
        run_id: Short token identifying the run; omitted from the name if empty.
    """
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    return f"events_{stamp}_{seq:04d}{'_' + run_id if run_id else ''}.csv"


def write_events_file(output_dir: str | os.PathLike, events: Iterable[Mapping[str, str]],
                      file_name: str) -> Path:
    """Write a CSV file atomically: dot-prefixed temp file, fsync, then rename.

    On any exception (including KeyboardInterrupt) the temporary file is removed and nothing
    appears under `file_name`.

    Args:
        output_dir: Existing folder to write into.
        events: Rows keyed by `EVENT_FIELDS`.
        file_name: Final name inside `output_dir`.

    Returns:
        Path of the final file.
    """
    folder = Path(output_dir)
    final = folder / file_name
    # Same folder, so the rename is atomic; the leading dot hides it from Spark's file source.
    tmp = folder / f".{file_name}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=EVENT_FIELDS, lineterminator="\n",
                                    extrasaction="raise")
            writer.writeheader()
            writer.writerows(events)
            f.flush()
            os.fsync(f.fileno())
        # The temp file was just written, so the final file's mtime is "now" for the job's
        # file source without an extra utime call.
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return final


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself, so a crash cannot bring back the temp name."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on directories
    finally:
        os.close(fd)
