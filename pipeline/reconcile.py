"""Check that every row of every file is accounted for, and print any file where it is not.

Usage:
    python -m pipeline.reconcile [--json]

For every file in `ingest_files`: rows_read = rows_written + rows_rejected + rows_duplicate,
and rows_rejected equals its rows in `events_rejected`. Over all files, the rows written
equal the rows in `events` (the job is the only writer of that table). Exit 0 when all
hold, 1 when any does not, 2 when the database cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.dbclient import TablesUnreadable, read_pipeline_tables

_FILES = """
SELECT f.source_file, f.rows_read, f.rows_written, f.rows_rejected, f.rows_duplicate,
       coalesce(r.quarantined, 0)
FROM ingest_files f
LEFT JOIN (SELECT source_file, count(*) AS quarantined FROM events_rejected
           GROUP BY source_file) r ON r.source_file = f.source_file
"""


def reconcile(cursor) -> tuple[int, list[str]]:
    """(files checked, problems), each problem naming a file or the whole table."""
    cursor.execute(_FILES)
    files = cursor.fetchall()
    problems = []
    for path, read, written, rejected, duplicate, quarantined in files:
        if read != written + rejected + duplicate:
            problems.append(f"{path}: read {read} != written {written} + rejected {rejected}"
                            f" + duplicate {duplicate}")
        if rejected != quarantined:
            problems.append(f"{path}: {rejected} rejected but {quarantined} rows in"
                            " events_rejected")
    cursor.execute("SELECT count(*) FROM events")
    events = cursor.fetchone()[0]
    written = sum(row[2] for row in files)
    if events != written:
        problems.append(f"events holds {events} rows but the files report {written} written")
    return len(files), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        checked, problems = read_pipeline_tables(reconcile)
    except TablesUnreadable as e:
        print(e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"files_checked": checked, "ok": not problems, "problems": problems}))
    else:
        for problem in problems:
            print(problem)
        print(f"{checked} file(s) checked: "
              + ("every row accounted for" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
