"""Benchmark suite: our streaming job against the tutorial design (plain and tuned) and
LOAD DATA, on issue 16's goals.

Run it with `bash scripts/bench.sh [--quick] [--repeat N] [--only NAME] [--job-args "..."]`;
see `bench/__main__.py` for the options. Everything runs against a throwaway MariaDB (TLS
on) that the bench starts on a free loopback port and stops again, never against port 3306;
the cluster scenario's master and workers likewise.
"""
