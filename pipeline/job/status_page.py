"""The page at `/` of the job's metrics port: what `python -m pipeline.ops.status` says, read
from the tables as the reporting account each time it is asked for."""

from __future__ import annotations

import logging
from datetime import UTC
from datetime import datetime
from html import escape

from pipeline.config import Settings
from pipeline.errors import TablesUnreadable
from pipeline.job.folder import spark_spelling
from pipeline.job.generations import CheckpointGenerations
from pipeline.job.generations import files_logged
from pipeline.job.options import JobOptions
from pipeline.job.options import local_path
from pipeline.report.db import read_pipeline_tables
from pipeline.report.page import render_page
from pipeline.report.status import collect_status
from pipeline.report.status import reject_examples

log = logging.getLogger(__name__)
# As `status` decides health by default.
STALE_AFTER_S = 120.0


class StatusPage:
    """Renders the page; a table that cannot be read is a 503 page that says why."""

    def __init__(self, settings: Settings, options: JobOptions,
                 generations: CheckpointGenerations | None):
        self._settings = settings
        # None for hdfs://, s3a://: no backlog, no heartbeat on the page then.
        self._source = spark_spelling(options.source)
        self._checkpoint = local_path(options.checkpoint)
        self._generations = generations
        if not settings.report_user:
            log.warning("MYSQL_REPORT_USER is not set: the status page reads the tables with"
                        " the job's account")

    def _facts(self) -> tuple[int | None, str | None, int | None]:
        if self._generations is None:
            return None, None, None
        location = self._generations.location
        return self._generations.current, str(location), files_logged(location)

    def __call__(self) -> tuple[int, str]:
        """(HTTP status, HTML)."""
        facts = self._facts()

        def read(cursor):
            return (collect_status(cursor, self._source, self._checkpoint, STALE_AFTER_S,
                                   facts), reject_examples(cursor))

        now = datetime.now(UTC).isoformat(sep=" ", timespec="seconds")
        try:
            status, examples = read_pipeline_tables(read, self._settings)
        except TablesUnreadable as e:
            return 503, (f"<!doctype html><title>events pipeline: tables unreadable</title>"
                         f"<p>{escape(str(e))} ({escape(now)})</p>")
        return 200, render_page(status, examples, now)
