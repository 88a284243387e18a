"""Spark's query id is written into SQL text (the ledger's key): it must be a UUID first."""

from __future__ import annotations

import pytest

from pipeline.job.batch import BatchWriter


def test_a_query_id_that_is_not_a_uuid_never_reaches_the_sink():
    writer = BatchWriter(sink=None, checkpoint=None, settings=None)
    writer.set_query_id("0F8FAD5B-D9CB-469F-A165-70867728950E")
    with pytest.raises(ValueError):
        writer.set_query_id("x'; DROP TABLE events; --")
