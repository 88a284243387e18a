"""spark_streaming.py with a kill -9 at a chosen moment of a commit: the tests' crash points.

The job itself reads no test switch; this launcher injects `CommitHooks` that kill the job's
whole process group (Python and its JVM) right before or right after a batch's COMMIT.

    python tests/support/crashing_job.py MOMENT WHEN -- [spark_streaming.py arguments]

MOMENT is before_commit or after_commit; WHEN is `batch=N` (the commit of batch N) or
`rate=R,seed=S` (each commit with probability R, drawn from random.Random(S)). MOMENT
rotation_switched or rotation_retiring kills at that stage of a checkpoint rotation, WHEN
`batch=N` naming the generation (the new one for switched, the current one for retiring).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.contract import CommitHooks  # noqa: E402 - after the sys.path line above
from spark_streaming import main  # noqa: E402 - after the sys.path line above

MOMENTS = ("before_commit", "after_commit", "rotation_switched", "rotation_retiring")


class KillAtCommit(CommitHooks):
    """kill -9 the process group at `moment` of the chosen batch, or at random ones."""

    def __init__(self, moment: str, batch: int | None = None, rate: float = 0.0,
                 seed: int = 0):
        self._moment, self._batch, self._rate = moment, batch, rate
        self._random = random.Random(seed)

    def _at(self, moment: str, batch_id: int) -> None:
        if moment != self._moment:
            return
        if (batch_id == self._batch) if self._batch is not None \
                else self._random.random() < self._rate:
            logging.warning("crash point: kill -9 %s of batch/generation %d",
                            moment.replace("_", " "), batch_id)
            os.killpg(os.getpgrp(), signal.SIGKILL)

    def before_commit(self, batch_id: int) -> None:
        self._at("before_commit", batch_id)

    def after_commit(self, batch_id: int) -> None:
        self._at("after_commit", batch_id)

    def at_rotation(self, stage: str, generation: int) -> None:
        self._at(f"rotation_{stage}", generation)


def parse_when(moment: str, when: str) -> KillAtCommit:
    if moment not in MOMENTS:
        raise SystemExit(f"MOMENT must be one of {', '.join(MOMENTS)}")
    fields = dict(part.split("=", 1) for part in when.split(","))
    if "batch" in fields:
        return KillAtCommit(moment, batch=int(fields["batch"]))
    return KillAtCommit(moment, rate=float(fields["rate"]), seed=int(fields["seed"]))


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[3] != "--":
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[4:], hooks=parse_when(sys.argv[1], sys.argv[2])))
