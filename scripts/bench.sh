#!/usr/bin/env bash
# Benchmark our streaming job against the tutorial design and LOAD DATA (see bench/).
#   bash scripts/bench.sh                    all scenarios but soak (about 10 minutes on 2 cores)
#   bash scripts/bench.sh --quick            every size ~10x smaller: a smoke run
#   bash scripts/bench.sh --only bulk --job-args "--catch-up-files 100"
#   bash scripts/bench.sh --only soak --soak-minutes 60
# Extra flags for our job: --job-args "..." or BENCH_JOB_ARGS="..." in the environment.
# It starts its own throwaway MariaDB on a free loopback port (never 3306) and stops it again.
# Results: a table on the terminal, bench/results/<timestamp>.json and .png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m bench "$@"
