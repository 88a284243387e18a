"""How much the order of the rows matters to LOAD DATA: one generated file's checked events
loaded into a fresh `events` table in file order (the chunks as the checks make them) and
in units sorted by event_id, of several sizes, on the bench's own MariaDB (loopback, TLS).

    .venv/bin/python -m bench.load_order [--rows 1000000] [--repeat 2]

Database side only: the rows go in through mysql-connector-python from memory-made files,
the same way for every variant, so only the order and the unit size differ. Writes
bench/results/<run-id>-load-order.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC
from datetime import datetime
from pathlib import Path

import mysql.connector

from bench.machine import describe
from bench.server import BenchServer
from bench.workload import generate
from pipeline.contract import DEFAULT_EVENT_TYPES
from pipeline.contract import EVENTS_TSV
from pipeline.read.local import LocalFile
from pipeline.validate.columnar import chunks_of_pieces
from pipeline.write.streamed import in_key_order

RESULTS = Path(__file__).resolve().parent / "results"
LOAD = ("LOAD DATA LOCAL INFILE '{path}' INTO TABLE events CHARACTER SET utf8mb4"
        " FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
        " (event_id, user_id, product_id, event_type, price, event_time)")


def event_chunks(path: Path) -> list[tuple[str, str, int, str]]:
    """The file's event chunks as the job's checks make them, in file order."""
    chunks = chunks_of_pieces(LocalFile(path).line_pieces(), DEFAULT_EVENT_TYPES,
                              event_format=EVENTS_TSV, chunk_bytes=64 * 1024 * 1024)
    return [(path.name, kind, rows, text) for kind, _, rows, text in chunks if kind == "event"]


def variants(chunks: list) -> dict[str, list[str]]:
    total = sum(rows for _, _, rows, _ in chunks)
    out = {"file order, chunks of 20,000": [text for *_, text in chunks]}
    for unit in (100_000, 200_000, total):
        label = "sorted as one" if unit == total else f"sorted, units of {unit:,}"
        out[label] = [text for *_, text in in_key_order(chunks, unit, unit)]
    return out


def load_seconds(server: BenchServer, folder: Path, name: str, texts: list[str]) -> float:
    db = server.create_plain(name)
    files = []
    for n, text in enumerate(texts):
        path = folder / f"{name}-{n}.tsv"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    conn = mysql.connector.connect(host="127.0.0.1", port=server.port, user=db.user,
                                   password=db.password, database=name, ssl_ca=str(server.ca_file),
                                   ssl_verify_cert=True, allow_local_infile_in_path=str(folder),
                                   autocommit=False)
    try:
        cur = conn.cursor()
        started = time.perf_counter()
        for path in files:
            cur.execute(LOAD.format(path=path))
            cur.execute("SHOW WARNINGS")
            cur.fetchall()
        conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
        for path in files:
            path.unlink()
    server.query(f"DROP DATABASE `{name}`")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=43)
    args = parser.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    print(f"load order: {args.rows:,} rows, seed {args.seed}, {args.repeat} repeats", flush=True)
    with tempfile.TemporaryDirectory(prefix="load-order-") as tmp:
        work = Path(tmp)
        exp = generate(work / "data", 1, args.rows, args.seed)
        chunks = event_chunks(exp.files[0])
        texts = variants(chunks)
        seconds: dict[str, list[float]] = {label: [] for label in texts}
        with BenchServer(work / "server") as server:
            machine = describe(server.version())
            for repeat in range(args.repeat):
                for n, (label, unit_texts) in enumerate(texts.items()):
                    s = load_seconds(server, work, f"order_{repeat}_{n}", unit_texts)
                    seconds[label].append(round(s, 2))
                    print(f"  #{repeat + 1} {label:32} {s:6.2f} s", flush=True)
    base = statistics.median(seconds["file order, chunks of 20,000"])
    table = {label: {"seconds": values, "median_s": statistics.median(values),
                     "x_file_order": round(base / statistics.median(values), 2)}
             for label, values in seconds.items()}
    for label, row in table.items():
        print(f"{label:32} median {row['median_s']:6.2f} s  {row['x_file_order']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{stamp}-load-order.json"
    path.write_text(json.dumps({"run_id": stamp, "rows": args.rows, "seed": args.seed,
                                "events_loaded": sum(r for _, _, r, _ in chunks),
                                "machine": machine, "variants": table}, indent=1))
    print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
