-- Least privilege for the streaming job's own account. Applied by `python -m pipeline.ops.setup_db`
-- (or by hand, with {database}, {user} and {events_update} replaced). The job needs no DDL and
-- no DELETE. UPDATE only for the upsert `INSERT ... ON DUPLICATE KEY UPDATE event_id =
-- events.event_id`, which needs it even as a no-op: MySQL 8 checks it on the assigned column
-- alone, so {events_update} is `UPDATE (event_id)` there; MariaDB checks it on every column the
-- INSERT names, so there it is `UPDATE (event_id, user_id, product_id, event_type, price,
-- event_time)`.
GRANT SELECT, INSERT, {events_update} ON `{database}`.`events` TO {user};
GRANT SELECT, INSERT ON `{database}`.`events_rejected` TO {user};
GRANT SELECT, INSERT ON `{database}`.`ingest_batches` TO {user};
GRANT SELECT, INSERT ON `{database}`.`ingest_files` TO {user};
