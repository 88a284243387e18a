"""When to take a backlog in big batches, when to stay there, and when to go back: the
Supervisor's decisions as a pure state machine, with no Spark and no clock of its own.

Spark fixes maxFilesPerTrigger when a query starts, so catching up is a query phase of its
own: an availableNow query taking --catch-up-files per micro-batch, after which the steady
query (--max-files-per-trigger) starts again. When files keep arriving faster than the
steady query takes them, switching back and forth would restart a query every few seconds;
the job then stays in an open-ended catch-up query (overloaded) until the flow slows down.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# More files than this waiting is a backlog: time to take --catch-up-files per micro-batch.
BACKLOG_FILES = 10
# How often (seconds) a running phase asks whether it is over.
BACKLOG_CHECK_S = 10
# After this many steady phases cut short at their first backlog check, stay at
# --catch-up-files per micro-batch until the batches of a whole OVERLOAD_CALM_S took no
# more than --max-files-per-trigger each.
OVERLOAD_SHORT_PHASES = 2
OVERLOAD_CALM_S = 30


@dataclass(frozen=True)
class Phase:
    """One query to run: how many files per micro-batch, and whether it ends by itself."""

    catching_up: bool
    available_now: bool
    files_per_trigger: int


class CatchUpPolicy:
    """Decides each phase from the backlog and the recent batches it is told about."""

    def __init__(self, steady_files: int, catch_up_files: int, once: bool = False):
        self.steady_files = steady_files
        self.catch_up_files = catch_up_files
        self.once = once
        self.overloaded = False
        self._short_steady_phases = 0
        self._caught_up_just_now = False

    @property
    def enabled(self) -> bool:
        return self.catch_up_files > self.steady_files

    def next_phase(self, backlog: int) -> Phase:
        """The phase to run now, given the files waiting."""
        caught_up_just_now, self._caught_up_just_now = self._caught_up_just_now, False
        catching_up = self.enabled and (self.overloaded or backlog > BACKLOG_FILES)
        if catching_up and caught_up_just_now:
            self._note_backlog(short=True)  # a backlog again as soon as it was gone
        return Phase(catching_up=catching_up,
                     available_now=self.once or (catching_up and not self.overloaded),
                     files_per_trigger=self.catch_up_files if catching_up
                     else self.steady_files)

    def caught_up(self) -> None:
        """A catch-up phase drained the backlog it started with."""
        self._caught_up_just_now = True

    def steady_phase_over(self, backlog: int, phase_s: float) -> bool:
        """In the steady phase: True when it is time to catch up."""
        if backlog <= BACKLOG_FILES:
            return False
        self._note_backlog(short=phase_s < 2 * BACKLOG_CHECK_S)
        return True

    def overload_over(self, phase_s: float, recent_batch_files: Iterable[int]) -> bool:
        """In the overloaded phase: True once the steady setting would keep up again.

        `recent_batch_files`: the file counts of the batches of the last OVERLOAD_CALM_S.
        """
        if phase_s < OVERLOAD_CALM_S:
            return False
        recent = list(recent_batch_files)
        if recent and max(recent) > self.steady_files:
            return False
        self.overloaded = False
        self._short_steady_phases = 0
        log.info("the flow slowed down: back to %d file(s) per micro-batch", self.steady_files)
        return True

    def _note_backlog(self, short: bool) -> None:
        """Count backlogs that came back at once; enough of them in a row mean overload."""
        self._short_steady_phases = self._short_steady_phases + 1 if short else 0
        if self._short_steady_phases >= OVERLOAD_SHORT_PHASES and not self.overloaded:
            self.overloaded = True
            log.info("files arrive faster than %d per micro-batch can take: staying at up to"
                     " %d files per micro-batch until the flow slows down", self.steady_files,
                     self.catch_up_files)
