"""The data files the package carries: the SQL of `sql/` and the settings of `config/`.

They are found through the package, wherever it is installed: `pipeline/data/` holds links
to the two top-level folders in a checkout, and copies of them in a built wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def data_file(*parts: str) -> Path:
    """A file of `pipeline/data/`, e.g. data_file("sql", "001_schema.sql")."""
    return Path(str(files("pipeline").joinpath("data", *parts)))
