"""The tutorial design, kept as the baseline the bench compares our job with.

Spark file source (csv, header, explicit schema, one file per trigger), `to_timestamp`, a
filter on `user_id IS NOT NULL`, and `foreachBatch` calling `DataFrame.write.jdbc(...,
mode="append")` with the driver's default settings. Nothing here is tuned: that is the point.

The "tuned plain" contender is the same code with the two settings a user of stock Spark
would reach for first: `--max-files-per-trigger 100` and `--url-options
rewriteBatchedStatements=true` (batched inserts in MariaDB Connector/J 2.7; see
docs/benchmarks.md for why that option and not `useBulkStmts`).

The only addition is a timing line per micro-batch (start and end of the foreachBatch call,
epoch seconds) appended to --timings, so the bench can see batches without touching the
database. Credentials come from BENCH_DB_USER / BENCH_DB_PASSWORD, never the command line.

    python bench/plain_job.py --source DIR --checkpoint DIR --url jdbc:mysql://127.0.0.1:P/db
                              --jar jars/mariadb-java-client.jar --timings FILE
                              (--once | --processing-time 0)
                              [--max-files-per-trigger N] [--url-options K=V[&K=V]]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType
from pyspark.sql.types import StringType
from pyspark.sql.types import StructField
from pyspark.sql.types import StructType

SCHEMA = StructType([
    StructField("event_id", StringType()),
    StructField("user_id", StringType()),
    StructField("product_id", StringType()),
    StructField("event_type", StringType()),
    StructField("price", DoubleType()),
    StructField("event_time", StringType()),
])


def main() -> int:
    parser = argparse.ArgumentParser(description="the tutorial's foreachBatch + write.jdbc job")
    parser.add_argument("--source", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--url", required=True, help="jdbc:mysql://host:port/database")
    parser.add_argument("--table", default="events")
    parser.add_argument("--jar", required=True, help="JDBC driver jar (spark.jars)")
    parser.add_argument("--timings", required=True, help="file to append one JSON line per batch")
    parser.add_argument("--max-files-per-trigger", type=int, default=1,
                        help="Spark's maxFilesPerTrigger (default: 1, the tutorial's)")
    parser.add_argument("--url-options", default="",
                        help="JDBC URL options, e.g. rewriteBatchedStatements=true")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="availableNow: drain, then exit")
    mode.add_argument("--processing-time", type=float, help="trigger interval in seconds")
    args = parser.parse_args()

    spark = (
        SparkSession.builder.master(os.environ.get("SPARK_MASTER", "local[2]"))
        .appName("plain_job")
        .config("spark.jars", args.jar)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    url = f"{args.url}?{args.url_options}" if args.url_options else args.url
    props = {"user": os.environ["BENCH_DB_USER"], "password": os.environ["BENCH_DB_PASSWORD"],
             "driver": "org.mariadb.jdbc.Driver"}

    events = (
        spark.readStream.format("csv")
        .option("header", True)
        .option("maxFilesPerTrigger", args.max_files_per_trigger)
        .schema(SCHEMA)
        .load(args.source)
        .withColumn("event_time", F.to_timestamp("event_time"))
        .filter(F.col("user_id").isNotNull())
    )

    timings = open(args.timings, "a", buffering=1)  # line-buffered: readable while running

    def write_batch(batch_df, batch_id: int) -> None:
        started = time.time()
        batch_df.write.jdbc(url, args.table, mode="append", properties=props)
        timings.write(json.dumps({"batch": batch_id, "start": started, "end": time.time()}) + "\n")

    writer = (events.writeStream.foreachBatch(write_batch)
              .option("checkpointLocation", args.checkpoint))
    if args.once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{args.processing_time} seconds")
    query = writer.start()
    query.awaitTermination()
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
