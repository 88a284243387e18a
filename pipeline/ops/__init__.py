"""Tools for whoever runs the pipeline: `setup_db` (database, tables, accounts), `status`,
`reconcile` (every file against the tables and its own bytes) and `chart`. They reach the
database through `db.connect`, with the job's TLS settings."""
