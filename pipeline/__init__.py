"""CSV event files -> Spark Structured Streaming -> MySQL, each event exactly once.

One package per stage, imports flowing one way:
    job (run, supervisor, batch) -> read / validate / write -> contract, errors, config
and beside them `ops` (the operator's tools) and `generate` (the data generator).
A newcomer follows one batch: job/run.py -> job/batch.py -> read/ -> validate/ -> write/sink.py.
"""

__version__ = "1.4.0"
