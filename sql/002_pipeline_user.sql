-- Least privilege for the streaming job's own user. Applied by `python -m pipeline.setup_db`
-- (or by hand, with {database} and {user} replaced). The job needs no DDL and no DELETE:
-- UPDATE on events only because INSERT ... ON DUPLICATE KEY UPDATE requires it even as a no-op.
GRANT SELECT, INSERT, UPDATE ON `{database}`.`events` TO {user};
GRANT SELECT, INSERT ON `{database}`.`events_rejected` TO {user};
GRANT SELECT, INSERT ON `{database}`.`ingest_batches` TO {user};
GRANT SELECT, INSERT ON `{database}`.`ingest_files` TO {user};
