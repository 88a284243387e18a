"""Writing: the only code that talks to the database from the job.

`sink.MySQLSink` holds the exactly-once commit protocol; `connection` the JDBC connection and
its TLS proof; `statements` the SQL text; `streamed` big batches; `ledger` what is committed.
"""
