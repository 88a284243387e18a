"""The streaming job: `run.run` starts it, `supervisor` runs its query phases as `policy`
decides, `batch.BatchWriter` writes each micro-batch, `routes` reads its files, `session`
builds the SparkSession."""
