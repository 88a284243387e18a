#!/usr/bin/env bash
# Benchmark our streaming job against the tutorial design (plain and tuned) and LOAD DATA
# (see bench/ and docs/benchmarks.md).
#   bash scripts/bench.sh                    every scenario but soak, 3 repeats (about 35 min)
#   bash scripts/bench.sh --quick --repeat 1 every size ~10x smaller, once: checks the harness
#   bash scripts/bench.sh --only backlog,cluster --repeat 3
#   bash scripts/bench.sh --only soak --soak-minutes 60
# Extra flags for our job: --job-args "..." or BENCH_JOB_ARGS="..." in the environment.
# It starts its own throwaway MariaDB on a free loopback port (never 3306), and for the
# cluster scenario a standalone master + 2 workers on free loopback ports; all stopped by pid.
# Results: tables on the terminal (each repeat, medians, issue 16's goals),
# bench/results/<run-id>.json (committed) and .png (not).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --for-tests  # MySQL Connector/J too: ours runs with each driver
exec .venv/bin/python -m bench "$@"
