"""Reading: which files make up a batch, and their lines.

Four routes, chosen per batch in `pipeline.job.routes.choose_route`:
- local files, small batch: `local.LocalFile` on the driver, the whole batch in one go;
- local files, big batch: `local.LocalFile` on the driver, streamed chunk by chunk;
- hdfs://, s3a:// (or --driver-batch-max-bytes 0): Spark tasks read the batch's files
  (`spark_source.read_files`), their chunks gathered on the driver;
- the same on a cluster: the executors' chunks streamed to the database a task at a time.
`checkpoint.CheckpointLog` names a batch's files in every route (`pipeline.ops.rebuild`
names them itself).
"""
