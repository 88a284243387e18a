"""Reading: which files make up a batch, and their lines.

Three routes, chosen per batch in `pipeline.job.routes.choose_route`:
- local files, small batch: `local.LocalFile` on the driver, the whole batch in one go;
- local files, big batch: `local.LocalFile` on the driver, streamed chunk by chunk;
- hdfs://, s3a:// (or --driver-batch-max-bytes 0): Spark tasks read `spark_source.raw_lines`.
`checkpoint.CheckpointLog` names a batch's files in every route.
"""
