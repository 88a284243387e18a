"""What every command of the project shares on its command line: its name in the usage line,
and `--version`."""

from __future__ import annotations

import argparse
import os
import sys

from pipeline import __version__


def command_name(module: str) -> str:
    """How the user started the command: `python -m MODULE`, or the console command's name
    (`events-status`) when installed with pip."""
    started_as = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if not started_as or started_as.endswith(".py") or started_as == "-c":
        return f"python -m {module}"
    return started_as


def add_version(parser: argparse.ArgumentParser) -> None:
    """`--version` prints the command's name and the project's version, then exits 0."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def tool_parser(module: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of one of the operator's tools, named as it was started."""
    parser = argparse.ArgumentParser(prog=command_name(module), description=description)
    add_version(parser)
    return parser
