"""Benchmark suite: our streaming job against the tutorial design and LOAD DATA.

Run it with `bash scripts/bench.sh [--quick] [--only NAME] [--job-args "..."]`; see
`bench/__main__.py` for the options. Everything runs against a throwaway MariaDB (TLS on)
that the bench starts on a free loopback port and stops again, never against port 3306.
"""
