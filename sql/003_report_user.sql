-- The read-only reporting account of `python -m pipeline.ops.status`, `chart` and `reconcile`.
-- Applied by `python -m pipeline.ops.setup_db` when MYSQL_REPORT_USER is set (or by hand, with
-- {database} and {user} replaced). Reading the ledger and the rows is all a report needs.
GRANT SELECT ON `{database}`.`events` TO {user};
GRANT SELECT ON `{database}`.`events_rejected` TO {user};
GRANT SELECT ON `{database}`.`ingest_batches` TO {user};
GRANT SELECT ON `{database}`.`ingest_files` TO {user};
