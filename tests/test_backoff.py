"""The pause between database attempts: doubling, capped, and jittered so that jobs that lost
the same server do not all come back in the same second."""

from __future__ import annotations

import random

from pipeline.config import RetrySettings


def test_the_pause_doubles_up_to_the_cap_and_keeps_at_least_half():
    retry = RetrySettings(max_attempts=8, backoff_s=1.0, backoff_max_s=30.0)
    assert [retry.delay(n, draw=lambda: 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert [retry.delay(n, draw=lambda: 0.0) for n in range(1, 8)] == [
        0.5, 1, 2, 4, 8, 15, 15]


def test_pauses_of_many_jobs_are_spread():
    seed = 20261207
    print("seed", seed)
    draw = random.Random(seed).random
    retry = RetrySettings(max_attempts=8, backoff_s=1.0, backoff_max_s=30.0)
    pauses = [retry.delay(6, draw=draw) for _ in range(200)]
    assert all(15 <= p <= 30 for p in pauses)
    # 200 jobs spread over the 15 s window: no whole second holds more than a fifth of them.
    per_second = [sum(1 for p in pauses if s <= p < s + 1) for s in range(15, 30)]
    assert max(per_second) < 40 and len(set(round(p, 3) for p in pauses)) > 150
