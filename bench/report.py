"""The table on the terminal, the raw figures as JSON, and a PNG chart."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.contenders import LOAD_DATA
from bench.contenders import OURS
from bench.contenders import PLAIN
from bench.contenders import Run
from bench.scenarios import ScenarioResult

COLUMNS = ("scenario", "contender", "rows", "seconds", "rows/s", "s/batch", "x plain",
           "x load_data", "goal", "result", "detail")


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def vs_plain(result: ScenarioResult, run: Run) -> float | None:
    """How many times better than plain, on the scenario's own measure (>1 = better)."""
    plain = result.run(PLAIN)
    if plain is None:
        return None
    if result.metric == "throughput":
        a, b = run.rows_per_s, plain.rows_per_s
    elif result.metric == "batch_time":
        a, b = plain.s_per_batch, run.s_per_batch
    elif result.metric == "latency":
        a, b = plain.extra.get("p50_s"), run.extra.get("p50_s")
    else:
        return None
    return a / b if a is not None and b else None


def vs_load_data(result: ScenarioResult, run: Run) -> float | None:
    load = result.run(LOAD_DATA)
    if load is None or result.metric not in ("throughput", "batch_time"):
        return None
    return run.rows_per_s / load.rows_per_s if run.rows_per_s and load.rows_per_s else None


def detail(run: Run) -> str:
    x = run.extra
    parts = []
    if "startup_s" in x:
        parts.append(f"start {x['startup_s']:.1f}s")
    if "rows_per_s_excl_startup" in x:
        parts.append(f"{x['rows_per_s_excl_startup']:,.0f} rows/s w/o start")
    if run.sink_s:
        parts.append(f"sink {sum(run.sink_s) / len(run.sink_s):.3f}s/batch")
    if "prepare_ms" in x and run.contender == OURS:
        client = (f" (client {x['db_client_ms'] / 1000:.1f}s)" if "db_client_ms" in x else "")
        parts.append(f"ledger: prepare {x['prepare_ms'] / 1000:.1f}s,"
                     f" write {x['write_ms'] / 1000:.1f}s{client}")
    if "wall_s_per_batch" in x:
        parts.append(f"wall/batch {x['wall_s_per_batch']:.3f}s")
    if "round_trips_per_batch" in x:
        parts.append(f"{x['round_trips_per_batch']} rt/batch {x['questions_per_batch']} q/batch")
    if "p50_s" in x:
        parts.append(f"p50 {_num(x['p50_s'], 3)}s p90 {_num(x['p90_s'], 3)}s"
                     f" p99 {_num(x['p99_s'], 3)}s")
    if "drain_s" in x:
        parts.append(f"drain {x['drain_s']:.1f}s (empty-folder run {x['empty_folder_s']:.1f}s)")
    if "insert_statements" in x:
        parts.append(f"{x['insert_statements']} INSERTs")
    if "driver_peak_rss_mib" in x:
        parts.append(f"driver peak {x['driver_peak_rss_mib']:.0f} MiB, tasks {x.get('tasks')}")
    if run.check != "ok":
        parts.append(f"CHECK: {run.check}")
    return ", ".join(parts)


def table(results: list[ScenarioResult]) -> str:
    rows = [COLUMNS]
    for result in results:
        goals = list(result.goals)
        label = f"{result.name}#{result.repeat}"
        if result.error:
            rows.append((label, "ERROR", "", "", "", "", "", "", "", "FAIL",
                         result.error.splitlines()[0][:100]))
        for run in result.runs:
            goal = goals.pop(0) if run.contender == OURS and goals else None
            rows.append((
                label, run.contender, _num(run.input_rows), _num(run.seconds, 1),
                _num(run.rows_per_s), _num(run.s_per_batch, 3),
                _num(vs_plain(result, run), 2), _num(vs_load_data(result, run), 2),
                goal.text if goal else "", verdict(goal) if goal else "", detail(run)))
        for goal in goals:  # further goals of the scenario, one line each
            rows.append((label, "", "", "", "", "", "", "", goal.text, verdict(goal), ""))
        rows.append((label, f"({result.elapsed_s:.0f} s)", "", "", "", "", "", "", "", "",
                     "; ".join(result.notes)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for i, r in enumerate(rows):
        cells = [str(c).rjust(w) if 2 <= j <= 7 else str(c).ljust(w)
                 for j, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells) + "  " + r[-1])
        if i == 0:
            lines.append("-" * (sum(widths) + 2 * len(widths) + 6))
    return "\n".join(line.rstrip() for line in lines)


def verdict(goal) -> str:
    if goal.passed is None:
        return "n/a"
    return f"{'PASS' if goal.passed else 'MISS'} ({goal.measured})"


LEGEND = """rows = data rows in the input files (the same for every contender; ours and plain store
the ~95% with a user_id, load_data stores all). seconds = process start -> exit (load_data:
connect -> last commit; live: the writing window). s/batch = (last batch end - first batch
start) / batches, so JVM start-up is excluded. x plain = times better than plain on the
scenario's measure (rows/s; s/batch for slow_link; p50 latency for live). x load_data =
rows/s ratio. "sink" = time inside foreachBatch (ours: prepare_ms + write_ms of the ledger;
write_ms is measured on the server, "client" is the driver's own time for the commit).
Figures vary with machine load: compare ratios from the same run, not across runs."""


def _repeat_dict(result: ScenarioResult) -> dict:
    return {
        "repeat": result.repeat, "metric": result.metric, "sizes": result.sizes,
        "elapsed_s": round(result.elapsed_s, 1), "error": result.error,
        "goals": [asdict(g) for g in result.goals], "notes": result.notes,
        "runs": [{**r.as_dict(), "sink_s": [round(x, 4) for x in r.sink_s],
                  "x_plain": vs_plain(result, r), "x_load_data": vs_load_data(result, r)}
                 for r in result.runs],
        "series": result.series,
    }


def to_json(path: Path, meta: dict, summaries: list) -> None:
    """One file per bench run: machine, commit, every repeat's figures, medians, goals."""
    scenarios = [{"name": s.name, **s.as_dict(), "repeats": [_repeat_dict(r) for r in s.repeats]}
                 for s in summaries]
    path.write_text(json.dumps({**meta, "scenarios": scenarios}, indent=1, default=str) + "\n")


def chart(path: Path, meta: dict, results: list[ScenarioResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {PLAIN: "#999999", LOAD_DATA: "#4c72b0", OURS: "#dd8452"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    m = meta["machine"]
    fig.suptitle(f"bench {meta['started_utc']}: {m['cores']} cores, {m['cpu_model']},"
                 f" Spark {m['spark']}, {m['mariadb']}", fontsize=10)

    def grouped(ax, names, value, title, ylabel, log=False):
        shown = [r for r in results if r.name in names and r.runs]
        for i, contender in enumerate((PLAIN, LOAD_DATA, OURS)):
            xs, ys = [], []
            for k, result in enumerate(shown):
                run = result.run(contender)
                if run is not None and value(run) is not None:
                    xs.append(k + (i - 1) * 0.27)
                    ys.append(value(run))
            ax.bar(xs, ys, width=0.25, color=colours[contender], label=contender)
        ax.set_xticks(range(len(shown)), [r.name for r in shown])
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=8)

    grouped(axes[0][0], ("backlog", "bulk", "slow_link"), lambda r: r.rows_per_s,
            "throughput (wall time, higher is better)", "rows/s", log=True)
    grouped(axes[0][1], ("backlog", "slow_link"), lambda r: r.s_per_batch,
            "seconds per micro-batch (lower is better)", "s", log=True)

    ax = axes[1][0]
    live = next((r for r in results if r.name == "live"), None)
    if live is not None and live.series:
        for contender in (PLAIN, OURS):
            points = [(t, lat) for t, lat in live.series.get(contender, []) if lat is not None]
            if points:
                ax.plot(*zip(*points), marker="o", ms=3, color=colours[contender],
                        label=contender)
        ax.set_xlabel("file written at (s)")
        ax.set_ylabel("rename -> visible (s)")
        ax.legend(fontsize=8)
    ax.set_title("live: latency per file (lower is better)")

    ax = axes[1][1]
    soak = next((r for r in results if r.name == "soak" and r.series.get("soak")), None)
    if soak is not None:
        samples = soak.series["soak"]
        t = [s["t_s"] / 60 for s in samples]
        ax.plot(t, [s["java_rss_mib"] for s in samples], label="driver JVM RSS (MiB)")
        ax.plot(t, [s["checkpoint_kib"] for s in samples], label="checkpoint (KiB)")
        ax.plot(t, [s["rows_per_s"] for s in samples], label="rows/s")
        ax.set_xlabel("minutes")
        ax.legend(fontsize=8)
        ax.set_title("soak")
    else:
        ax.axis("off")
        lines = [f"{r.name}: {g.text}: {verdict(g)}" for r in results for g in r.goals]
        lines += [f"{r.name}: ERROR {r.error.splitlines()[0][:70]}" for r in results if r.error]
        ax.text(0, 1, "\n".join(lines) or "no goals", va="top", family="monospace", fontsize=8)
        ax.set_title("goals")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
