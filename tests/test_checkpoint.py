"""Reading a batch's files from Spark's checkpoint: the direct local reader and the Hadoop
reader (hdfs://, s3a://) agree with what Spark really put in each micro-batch, across the
file-source log's compaction and after maxFilesPerTrigger changes (as catch-up does)."""

from __future__ import annotations

from pyspark.sql import functions as F

from pipeline.checkpoint import CheckpointLog, canonical_path
from pipeline.job import CHECKPOINT_MANAGER_CONF, LOCAL_CHECKPOINT_MANAGER

HEADER = "event_id,user_id,product_id,event_type,price,event_time"


def _stream(spark, source, checkpoint, files_per_trigger, seen):
    def record(batch_df, batch_id):
        paths = batch_df.select("source_file").distinct().collect()
        seen[batch_id] = sorted(canonical_path(r[0]) for r in paths)

    query = (spark.readStream.format("text").option("maxFilesPerTrigger", files_per_trigger)
             .load(str(source)).select(F.col("_metadata.file_path").alias("source_file"))
             .writeStream.option("checkpointLocation", str(checkpoint))
             .foreachBatch(record).trigger(availableNow=True).start())
    query.awaitTermination(120)
    assert not query.isActive, "the test query did not finish in 120 s"


def test_both_readers_name_the_files_spark_put_in_each_batch(spark, tmp_path):
    # The job's checkpoint writer for local folders; a misspelt class would fail the query.
    spark.conf.set(CHECKPOINT_MANAGER_CONF, LOCAL_CHECKPOINT_MANAGER)
    source, checkpoint = tmp_path / "in dir", tmp_path / "checkpoint"
    source.mkdir()
    seen: dict[int, list[str]] = {}
    try:
        for i in range(14):  # one file per batch: past the first compaction (every 10th)
            (source / f"events_{i:03}.csv").write_text(f"{HEADER}\ne{i},u,p,view,1.00,x\n")
        _stream(spark, source, checkpoint, 1, seen)
        for i in range(14, 23):  # several files per batch, as in catch-up
            (source / f"events_{i:03}.csv").write_text(f"{HEADER}\ne{i},u,p,view,1.00,x\n")
        _stream(spark, source, checkpoint, 4, seen)
    finally:
        spark.conf.unset(CHECKPOINT_MANAGER_CONF)
    assert sorted(seen) == list(range(17)) and len(seen[16]) == 1 and len(seen[14]) == 4
    assert (checkpoint / "sources" / "0" / "9.compact").exists()

    readers = {"local": CheckpointLog(spark, str(checkpoint)),
               "file URI": CheckpointLog(spark, checkpoint.as_uri()),
               "hadoop": CheckpointLog(spark, str(checkpoint), through_hadoop=True)}
    for name, reader in readers.items():
        for batch_id, files in seen.items():
            got = sorted(f.path for f in reader.files_of_batch(batch_id))
            assert got == files, f"{name} reader, batch {batch_id}"
