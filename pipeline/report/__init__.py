"""What the operator reads: the pipeline's state from its tables (status.py), through the one
TLS-checked client of the tools (db.py), and the status page the job serves (page.py).

It imports only the shared contract, config and errors, so both the job (its status page)
and the tools in `ops` may use it.
"""
