"""Reading a batch's files from Spark's checkpoint: the direct local reader and the Hadoop
reader (hdfs://, s3a://) agree with what Spark really put in each micro-batch, across the
file-source log's compaction, after Spark deleted superseded log files, and after
maxFilesPerTrigger changes (as catch-up does)."""

from __future__ import annotations

from pyspark.sql import functions as F

from pipeline.job.session import LOCAL_CHECKPOINT_CONF
from pipeline.read.checkpoint import CheckpointLog
from pipeline.read.local import decode_uri

HEADER = "event_id,user_id,product_id,event_type,price,event_time"


def _stream(spark, source, checkpoint, files_per_trigger, seen):
    def record(batch_df, batch_id):
        paths = batch_df.select("source_file").distinct().collect()
        seen[batch_id] = sorted(decode_uri(r[0])[0] for r in paths)

    query = (spark.readStream.format("text").option("maxFilesPerTrigger", files_per_trigger)
             .load(str(source)).select(F.col("_metadata.file_path").alias("source_file"))
             .writeStream.option("checkpointLocation", str(checkpoint))
             .foreachBatch(record).trigger(availableNow=True).start())
    query.awaitTermination(120)
    assert not query.isActive, "the test query did not finish in 120 s"


def test_both_readers_name_the_files_spark_put_in_each_batch(spark, tmp_path):
    # The job's settings for local checkpoints (a misspelt class would fail the query), with
    # compaction every 10th batch and only 4 batches kept, so 17 batches see both at work.
    conf = {**LOCAL_CHECKPOINT_CONF, "spark.sql.streaming.fileSource.log.compactInterval": "10",
            "spark.sql.streaming.minBatchesToRetain": "4"}
    for key, value in conf.items():
        spark.conf.set(key, value)
    source, checkpoint = tmp_path / "in dir", tmp_path / "checkpoint"
    source.mkdir()
    seen: dict[int, list[str]] = {}
    try:
        for i in range(14):  # one file per batch
            (source / f"events_{i:03}.csv").write_text(f"{HEADER}\ne{i},u,p,view,1.00,x\n")
        _stream(spark, source, checkpoint, 1, seen)
        for i in range(14, 23):  # several files per batch, as in catch-up
            (source / f"events_{i:03}.csv").write_text(f"{HEADER}\ne{i},u,p,view,1.00,x\n")
        _stream(spark, source, checkpoint, 4, seen)
    finally:
        for key in conf:
            spark.conf.unset(key)
    assert sorted(seen) == list(range(17)) and len(seen[16]) == 1 and len(seen[14]) == 4
    log_files = {p.name for p in (checkpoint / "sources" / "0").iterdir()}
    entries = {int(name.removesuffix(".compact")) for name in log_files if name[0].isdigit()}
    # 9.compact holds entries 0-9; the files it superseded were deleted at once.
    assert "9.compact" in log_files and entries == set(range(9, 17)), sorted(log_files)
    kept = {int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit()}
    assert 0 not in kept and {13, 14, 15, 16} <= kept, kept

    readers = {"local": CheckpointLog(spark, str(checkpoint)),
               "file URI": CheckpointLog(spark, checkpoint.as_uri()),
               "hadoop": CheckpointLog(spark, str(checkpoint), through_hadoop=True)}
    for name, reader in readers.items():
        for batch_id, files in seen.items():
            if not {batch_id - 1, batch_id} <= kept:  # Spark deleted offsets it needs
                continue
            got = sorted(f.name for f in reader.files_of_batch(batch_id))
            assert got == files, f"{name} reader, batch {batch_id}"
