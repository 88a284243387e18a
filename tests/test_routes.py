"""Which route a batch takes: with a local master exactly as before, and on a cluster big
batches (and every batch on hdfs://, s3a://) go to executor tasks, streamed to the driver."""

from __future__ import annotations

import os
from datetime import UTC
from datetime import datetime

from pipeline.job.routes import ROUTE_DRIVER
from pipeline.job.routes import ROUTE_SPARK
from pipeline.job.routes import ROUTE_SPARK_STREAMED
from pipeline.job.routes import ROUTE_STREAMED
from pipeline.job.routes import choose_route
from pipeline.job.routes import on_cluster
from pipeline.read.checkpoint import SourceFile

WHEN = datetime(2026, 1, 31, tzinfo=UTC)


def files_of(tmp_path, sizes: list[int]) -> list[SourceFile]:
    out = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"events_{i}.csv"
        path.write_bytes(b"x" * size)
        out.append(SourceFile(f"file://{path}", WHEN))
    return out


def test_a_local_master_keeps_the_driver_and_streamed_routes(tmp_path):
    small, big = files_of(tmp_path, [100]), files_of(tmp_path, [100, 5000])
    assert choose_route(small, 1000) == ROUTE_DRIVER
    assert choose_route(big, 1000) == ROUTE_STREAMED
    assert choose_route(small, 0) == ROUTE_SPARK
    assert choose_route([SourceFile("hdfs://nn/events_1.csv", WHEN)], 1000) == ROUTE_SPARK


def test_on_a_cluster_big_batches_and_remote_files_go_to_the_executors(tmp_path):
    small, big = files_of(tmp_path, [100]), files_of(tmp_path, [100, 5000])
    assert choose_route(small, 1000, cluster=True) == ROUTE_DRIVER
    assert choose_route(big, 1000, cluster=True) == ROUTE_SPARK_STREAMED
    assert choose_route(small, 0, cluster=True) == ROUTE_SPARK_STREAMED
    assert choose_route([SourceFile("s3a://b/events_1.csv", WHEN)], 1000,
                        cluster=True) == ROUTE_SPARK_STREAMED


def test_a_batch_spark_must_not_open_stays_on_the_driver_on_a_cluster(tmp_path):
    fifo = tmp_path / "events_fifo.csv"
    os.mkfifo(fifo)
    batch = [*files_of(tmp_path, [5000]), SourceFile(f"file://{fifo}", WHEN)]
    assert choose_route(batch, 1000, cluster=True) == ROUTE_STREAMED
    assert choose_route(batch, 0, cluster=True) == ROUTE_DRIVER


def test_only_local_masters_count_as_local():
    assert not on_cluster("local[*]") and not on_cluster("local-cluster[2,1,1024]")
    assert on_cluster("spark://127.0.0.1:7077") and on_cluster("yarn")


def test_a_file_read_alone_by_executors_is_found_however_spark_spells_it(
        tmp_path, spark, database):
    """A refused batch's files are read again one by one by filtering the batch on the
    file's URI. The log spells it `file:///...`, the rows `file:/...`: matched as one, the
    file's rows all come back (as read in a whole batch), not none."""
    from pipeline.contract import FilePayload
    from pipeline.job.routes import chunks_from_executors
    from tests.support.jobs import job_settings

    folder = tmp_path / "in a folder"
    folder.mkdir()
    path = folder / "events_one two%.csv"
    path.write_text("event_id,user_id,product_id,event_type,price,event_time\n"
                    + "".join(f"e{i},u1,p1,view,1.50,2026-01-31T12:00:00Z\n" for i in range(5))
                    + "bad,u1,p1,view,cheap,2026-01-31T12:00:00Z\n")
    other = folder / "events_other.csv"
    other.write_text("event_id,user_id,product_id,event_type,price,event_time\n"
                     "x1,u1,p1,view,1.50,2026-01-31T12:00:00Z\n")
    # As the stream's batch has them (read_lines): the rows' own _metadata.file_path.
    lines = spark.read.format("text").load(str(folder)).select(
        "_metadata.file_path", "value").withColumnRenamed("file_path", "source_file")
    source = SourceFile(path.as_uri(), WHEN)  # file:///..., as the log spells it
    assert source.uri.startswith("file:///") and "%20" in source.uri
    target = FilePayload(source.name, WHEN)
    chunks = list(chunks_from_executors(lines, [source], [target], job_settings(database),
                                        1 << 20, whole_batch=False))
    assert {name for name, *_ in chunks} == {source.name}
    assert sum(rows for _, kind, rows, _ in chunks if kind == "event") == 5
    assert sum(rows for _, kind, rows, _ in chunks if kind != "event") == 1
