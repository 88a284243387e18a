"""bash scripts/bench.sh [options]: our job against the tutorial design and LOAD DATA.

Starts a throwaway MariaDB (TLS on, loopback, free port), runs the chosen scenarios one
after the other, each --repeat times, then prints a table per repeat, the medians and
issue 16's goal table, and writes bench/results/<timestamp>.json (small text, meant to be
committed; a quick run's file ends in -quick.json and is not) and a .png chart.
Every server and job it starts is stopped again by pid, also on Ctrl-C or a failure.

    --quick               every size about 10x smaller (a smoke run of a few minutes)
    --repeat N            runs of every scenario (default 3); the goals judge the median
    --only NAME[,NAME]    backlog, bulk, slow_link, live, cluster, soak (repeatable)
    --job-args "..."      flags for spark_streaming.py (default "--catch-up-files 100",
                          as the demo runs it; or set BENCH_JOB_ARGS; "" for none)
    --soak                add the soak scenario (--soak-minutes, --soak-interval,
                          --soak-rotate-files: the checkpoint rotates every N files)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `pipeline` and `tests.support` from this checkout

from bench import machine  # noqa: E402 - after the sys.path line above
from bench import report  # noqa: E402 - after the sys.path line above
from bench import summary  # noqa: E402 - after the sys.path line above
from bench.jobs import DRIVER_JAR  # noqa: E402 - after the sys.path line above
from bench.jobs import MYSQL_DRIVER_JAR  # noqa: E402 - after the sys.path line above
from bench.jobs import PYTHON  # noqa: E402 - after the sys.path line above
from bench.scenarios import DEFAULT_ORDER  # noqa: E402 - after the sys.path line above
from bench.scenarios import SCENARIOS  # noqa: E402 - after the sys.path line above
from bench.scenarios import Context  # noqa: E402 - after the sys.path line above
from bench.scenarios import run_scenario  # noqa: E402 - after the sys.path line above
from bench.server import SERVER_ARGS  # noqa: E402 - after the sys.path line above
from bench.server import BenchServer  # noqa: E402 - after the sys.path line above
from tests.support.jobs import keep_temporary_files_in  # noqa: E402 - after the sys.path line

RESULTS = ROOT / "bench" / "results"
DEFAULT_JOB_ARGS = "--catch-up-files 100"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="sizes about 10x smaller")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of every scenario; the table reports the median and the"
                             " spread (default: %(default)s; the soak always runs once)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help=f"run only these scenarios ({', '.join(SCENARIOS)})")
    parser.add_argument("--job-args",
                        default=os.environ.get("BENCH_JOB_ARGS", DEFAULT_JOB_ARGS),
                        metavar="ARGS", help="extra flags for spark_streaming.py (default:"
                        f" $BENCH_JOB_ARGS, else {DEFAULT_JOB_ARGS!r}, as the demo runs it)")
    parser.add_argument("--soak", action="store_true", help="also run the soak scenario")
    parser.add_argument("--soak-minutes", type=float, default=60, metavar="M")
    parser.add_argument("--soak-interval", type=float, default=1.0, metavar="SECONDS",
                        help="generator interval during the soak (default: %(default)s)")
    parser.add_argument("--soak-rotate-files", type=int, default=500, metavar="N",
                        help="the job's --checkpoint-rotate-files during the soak, small so"
                             " that it rotates many times (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--budget-minutes", type=float, default=None, metavar="M",
                        help="skip the scenario runs that would start after this much time"
                             " (default: 13 per repeat, plus the soak's length)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (data, logs, server datadir) for a look")
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from"
                     f" {', '.join(SCENARIOS)}")
    args.scenarios = names or [*DEFAULT_ORDER, *(["soak"] if args.soak else [])]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.budget_minutes is None:
        # About 11 minutes per repeat of everything on 2 cores, plus slack.
        args.budget_minutes = 13 * args.repeat + (args.soak_minutes + 3
                                                  if "soak" in args.scenarios else 0)
    args.job_args_list = shlex.split(args.job_args)
    return args


def check_job_flags(job_args: list[str]) -> None:
    """A flag the job does not (yet) have fails here, not after a server start."""
    flags = [a.split("=")[0] for a in job_args if a.startswith("--")]
    if not flags:
        return
    help_text = subprocess.run([PYTHON, str(ROOT / "spark_streaming.py"), "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    missing = [f for f in flags if f not in help_text]
    if missing:
        sys.exit(f"bench: spark_streaming.py has no {', '.join(missing)} (yet); drop it from"
                 " --job-args")


def _terminate(signum, _frame):
    # Turn SIGTERM into the same unwinding as Ctrl-C, so every finally block stops its process.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not DRIVER_JAR.is_file():
        sys.exit(f"bench: no JDBC driver at {DRIVER_JAR}: run bash scripts/setup.sh")
    if not MYSQL_DRIVER_JAR.is_file():
        sys.exit(f"bench: no MySQL Connector/J at {MYSQL_DRIVER_JAR}: run"
                 " bash scripts/setup.sh --for-tests")
    check_job_flags(args.job_args_list)
    signal.signal(signal.SIGTERM, _terminate)
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    keep_temporary_files_in(work / "tmp")  # removed with the work folder
    t0 = time.monotonic()
    results, summaries, meta = [], [], {}
    failed = False
    print(f"bench: scenarios {', '.join(args.scenarios)}{' (quick sizes)' if args.quick else ''};"
          f" job args {args.job_args_list or 'none'}; work folder {work}", flush=True)
    try:
        with BenchServer(work) as server:
            meta = {
                "started_utc": started.isoformat(timespec="seconds"),
                "command": "bash scripts/bench.sh " + " ".join(shlex.quote(a) for a in
                                                               (argv or sys.argv[1:])),
                "options": {"quick": args.quick, "repeat": args.repeat,
                            "scenarios": args.scenarios,
                            "job_args": args.job_args_list, "seed": args.seed,
                            "spark_master": "local[2]"},
                "machine": machine.describe(server.version()),
                "server": {"args": list(SERVER_ARGS), "tls": "on, not required",
                           **server.variables("innodb_buffer_pool_size", "innodb_log_file_size",
                                              "max_allowed_packet", "local_infile",
                                              "innodb_flush_log_at_trx_commit", "have_ssl")},
            }
            print(f"bench: MariaDB {meta['machine']['mariadb']} (pid {server.pid}) on"
                  f" 127.0.0.1:{server.port}", flush=True)
            ctx = Context(server, work, args.quick, args.seed, args.job_args_list,
                          args.soak_minutes, args.soak_interval, args.soak_rotate_files)
            for name in args.scenarios:
                repeats = []
                for repeat in range(1, (1 if name == "soak" else args.repeat) + 1):
                    ctx.repeat = repeat
                    if time.monotonic() - t0 > args.budget_minutes * 60:
                        result = run_scenario_skipped(name, repeat, args.budget_minutes)
                    else:
                        print(f"bench: {name} #{repeat} ...", flush=True)
                        result = run_scenario(ctx, name)
                    repeats.append(result)
                    failed |= result.error is not None
                    status = (f"ERROR {result.error.splitlines()[0]}" if result.error else
                              ", ".join(f"{report.verdict(g)} {g.text}" for g in result.goals))
                    print(f"bench: {name} #{repeat} done in {result.elapsed_s:.0f} s: {status}",
                          flush=True)
                    if result.error and len(result.error.splitlines()) > 1:
                        print("\n".join(result.error.splitlines()[1:]), flush=True)
                results.extend(repeats)
                summaries.append(summary.summarize(name, repeats))
    except KeyboardInterrupt:
        print("bench: interrupted; servers and jobs stopped", flush=True)
        failed = True
    finally:
        if meta:
            meta["elapsed_s"] = round(time.monotonic() - t0, 1)
            meta["finished_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
            meta["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            meta["goal_table"] = summary.goals_table(summaries, args.repeat).splitlines()
            run_id = f"{stamp}-quick" if args.quick else stamp
            json_path, png_path = RESULTS / f"{run_id}.json", RESULTS / f"{run_id}.png"
            report.to_json(json_path, meta, summaries)
            try:
                report.chart(png_path, meta, [s.repeats[-1] for s in summaries if s.repeats])
            except Exception as e:  # noqa: BLE001 - the table and JSON matter more
                print(f"bench: chart failed: {e}")
            print()
            print(report.table(results))
            print()
            print(report.LEGEND)
            print()
            print(summary.contenders_table(summaries))
            print()
            print(summary.goals_table(summaries, args.repeat))
            print(f"\nmachine: {meta['machine']}")
            print(f"total {meta['elapsed_s']:.0f} s; wrote {json_path.relative_to(ROOT)} and"
                  f" {png_path.relative_to(ROOT)}")
        if failed:
            logs = RESULTS / f"{stamp}-logs"
            logs.mkdir(exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, logs / log.name)
            print(f"job logs kept in {logs.relative_to(ROOT)}")
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def run_scenario_skipped(name: str, repeat: int, budget: float):
    from bench.scenarios import ScenarioResult

    result = ScenarioResult(name, SCENARIOS[name][0], {}, repeat=repeat)
    result.error = f"skipped: the {budget:.0f}-minute budget was used up"
    return result


if __name__ == "__main__":
    sys.exit(main())
