"""Medians over the repeats of a scenario, and issue 16's goal table.

Each repeat is a complete scenario run whose ratios use baselines measured in that same
repeat. The summary takes, per contender, the median of its headline figure (and its
spread, min-max); per goal, the median of the repeats' values, judged against the limit.
A side condition that failed in any repeat (not exactly once, a row not checked, batched
inserts not in effect) makes the goal missed whatever the median.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from dataclasses import field

from bench.scenarios import ScenarioResult

# Issue 16's goals, in its order: scenario -> (goal, target) as the table prints them.
GOAL_ROWS = {
    "bulk": ("bulk, one 1,000,000-row file", ">= 0.9x LOAD DATA, exactly-once, every row"
             " checked"),
    "backlog": ("backlog, 200 x 21-row files", ">= 3x the tuned plain design"),
    "slow_link": ("slow link, 50 ms round trip, 21-row batches", "<= 0.15 s per batch"),
    "live": ("live, 1 file/s", "p99 <= 0.3 s"),
    "cluster": ("cluster, 2 workers, batches of 0.3M and 2.4M rows", "tasks on every worker;"
                " driver peak memory for 2.4M <= 1.25x that for 0.3M"),
}


@dataclass
class Spread:
    values: list[float]

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def text(self, digits: int = 3) -> str:
        if not self.values:
            return "no figure"
        med = _fmt(self.median, digits)
        if len(self.values) == 1:
            return med
        return f"{med} ({_fmt(min(self.values), digits)}-{_fmt(max(self.values), digits)})"

    def as_dict(self) -> dict:
        return {"values": self.values, "median": self.median,
                "min": min(self.values) if self.values else None,
                "max": max(self.values) if self.values else None}


def _fmt(value: float, digits: int) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


@dataclass
class GoalSummary:
    text: str
    spread: Spread
    limit: float | None
    at_least: bool
    unit: str
    conditions: list[str] = field(default_factory=list)
    verdicts: list[bool | None] = field(default_factory=list)  # non-numeric goals (soak)

    @property
    def passed(self) -> bool | None:
        median = self.spread.median
        if median is None or self.limit is None:
            judged = [v for v in self.verdicts if v is not None]
            return all(judged) if judged else None
        ok = median >= self.limit if self.at_least else median <= self.limit
        return ok and not self.conditions

    @property
    def verdict(self) -> str:
        return {True: "met", False: "missed", None: "not judged"}[self.passed]

    def measured(self) -> str:
        text = self.spread.text() + self.unit if self.spread.values else "no figure"
        if self.spread.values and len(self.spread.values) < len(self.verdicts):
            # A repeat without a figure (a failed run, a drain lost in the noise) is left
            # out of the median: say so rather than let it look like a full set.
            text += f" [{len(self.spread.values)} of {len(self.verdicts)} repeats had a figure]"
        return text + "".join(f"; {c}" for c in self.conditions)

    def as_dict(self) -> dict:
        return {"text": self.text, **self.spread.as_dict(), "limit": self.limit,
                "at_least": self.at_least, "unit": self.unit, "conditions": self.conditions,
                "verdict": self.verdict}


@dataclass
class ScenarioSummary:
    name: str
    figure: str
    repeats: list[ScenarioResult]
    contenders: dict[str, Spread]
    goals: list[GoalSummary]

    @property
    def errors(self) -> list[str]:
        return [f"repeat {r.repeat}: {r.error.splitlines()[0]}" for r in self.repeats if r.error]

    def as_dict(self) -> dict:
        return {"figure": self.figure,
                "contenders": {c: s.as_dict() for c, s in self.contenders.items()},
                "goals": [g.as_dict() for g in self.goals], "errors": self.errors}


def summarize(name: str, repeats: list[ScenarioResult]) -> ScenarioSummary:
    contenders: dict[str, Spread] = {}
    for result in repeats:
        for run in result.runs:
            spread = contenders.setdefault(run.contender, Spread([]))
            if run.extra.get("figure") is not None:
                spread.values.append(run.extra["figure"])
    goals: dict[str, GoalSummary] = {}
    for result in repeats:
        for goal in result.goals:
            g = goals.setdefault(goal.text, GoalSummary(goal.text, Spread([]), goal.limit,
                                                        goal.at_least, goal.unit))
            if goal.value is not None:
                g.spread.values.append(goal.value)
            if goal.condition:
                g.conditions.append(f"repeat {result.repeat}: {goal.condition}")
            g.verdicts.append(goal.passed)
    figure = next((r.figure for r in repeats if r.figure), "")
    return ScenarioSummary(name, figure, repeats, contenders, list(goals.values()))


def contenders_table(summaries: list[ScenarioSummary]) -> str:
    lines = ["scenario   contender      median (min-max) over the repeats    figure"]
    for s in summaries:
        for contender, spread in s.contenders.items():
            lines.append(f"{s.name:<10} {contender:<14} {spread.text():<36} {s.figure}")
        for error in s.errors:
            lines.append(f"{s.name:<10} ERROR          {error[:120]}")
    return "\n".join(lines)


def goals_table(summaries: list[ScenarioSummary], repeats: int) -> str:
    """Issue 16's goal rows, as markdown: what it asks, what the median says, met or not."""
    by_name = {s.name: s for s in summaries}
    lines = [f"| scenario | goal | measured: median (min-max) of {repeats} | result |",
             "|---|---|---|---|"]
    for name, (scenario, target) in GOAL_ROWS.items():
        s = by_name.get(name)
        if s is None:
            lines.append(f"| {scenario} | {target} | not run | - |")
            continue
        if not s.goals:
            lines.append(f"| {scenario} | {target} | {'; '.join(s.errors) or 'no figure'} |"
                         " not judged |")
        for g in s.goals:
            lines.append(f"| {scenario} | {g.text.split(': ', 1)[-1]} | {g.measured()} |"
                         f" **{g.verdict}** |")
    return "\n".join(lines)
