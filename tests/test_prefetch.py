"""pipeline.job.prefetch: a generator run ahead of its consumer in a thread."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.job.prefetch import prefetched


def test_items_arrive_in_order_and_the_producer_runs_ahead():
    produced: list[int] = []

    def numbers():
        for i in range(10):
            produced.append(i)
            yield i

    with prefetched(numbers(), depth=3) as items:
        first = next(items)
        deadline = time.monotonic() + 5
        while len(produced) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        # One handed over, three waiting in the queue, the next one being produced.
        assert first == 0 and len(produced) >= 4
        assert [first, *items] == list(range(10))


def test_an_error_in_the_producer_reaches_the_consumer():
    def failing():
        yield 1
        raise OSError("disk gone")

    with prefetched(failing()) as items:
        assert next(items) == 1
        with pytest.raises(OSError, match="disk gone"):
            next(items)


def test_leaving_early_stops_the_producer():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    before = {t.name for t in threading.enumerate()}
    with prefetched(endless(), name="endless-test") as items:
        assert next(items) == 0
        assert "endless-test" in {t.name for t in threading.enumerate()}
    assert {t.name for t in threading.enumerate()} <= before
