"""The Supervisor's decisions in process: when to catch up on a backlog, when files arrive
too fast to switch back, and when the flow has slowed down again."""

from __future__ import annotations

from pipeline.job.policy import BACKLOG_CHECK_S
from pipeline.job.policy import BACKLOG_FILES
from pipeline.job.policy import OVERLOAD_CALM_S
from pipeline.job.policy import CatchUpPolicy
from pipeline.job.policy import Phase


def test_without_catch_up_every_phase_is_steady():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=0)
    assert not policy.enabled
    assert policy.next_phase(backlog=500) == Phase(False, False, 1)


def test_a_backlog_is_taken_in_big_batches_then_the_steady_query_comes_back():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=100)
    assert policy.next_phase(backlog=BACKLOG_FILES) == Phase(False, False, 1)
    assert policy.next_phase(backlog=BACKLOG_FILES + 1) == Phase(True, True, 100)
    policy.caught_up()
    assert policy.next_phase(backlog=0) == Phase(False, False, 1)
    assert not policy.overloaded


def test_once_drains_with_an_available_now_query_whatever_the_backlog():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=100, once=True)
    assert policy.next_phase(backlog=0) == Phase(False, True, 1)
    assert policy.next_phase(backlog=50) == Phase(True, True, 100)


def test_the_steady_phase_ends_when_a_backlog_builds_up():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=100)
    assert not policy.steady_phase_over(backlog=BACKLOG_FILES, phase_s=300)
    assert policy.steady_phase_over(backlog=BACKLOG_FILES + 1, phase_s=300)
    assert not policy.overloaded  # a long steady phase is no sign of overload


def test_backlogs_that_come_back_at_once_mean_overload_until_the_flow_is_calm():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=100)
    policy.next_phase(backlog=50)
    policy.caught_up()
    policy.next_phase(backlog=50)  # a backlog right after catching up: short phase 1
    policy.caught_up()
    phase = policy.next_phase(backlog=50)  # and again: overloaded
    assert policy.overloaded
    assert phase == Phase(True, False, 100)  # an open-ended catch-up query
    assert not policy.overload_over(phase_s=OVERLOAD_CALM_S - 1, recent_batch_files=[1])
    assert not policy.overload_over(phase_s=OVERLOAD_CALM_S, recent_batch_files=[1, 7, 1])
    assert policy.overload_over(phase_s=OVERLOAD_CALM_S, recent_batch_files=[1, 1])
    assert not policy.overloaded
    assert policy.next_phase(backlog=0) == Phase(False, False, 1)


def test_short_steady_phases_also_count_towards_overload():
    policy = CatchUpPolicy(steady_files=1, catch_up_files=100)
    assert policy.steady_phase_over(backlog=50, phase_s=BACKLOG_CHECK_S)
    assert not policy.overloaded
    assert policy.steady_phase_over(backlog=50, phase_s=BACKLOG_CHECK_S)
    assert policy.overloaded
