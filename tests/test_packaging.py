"""`pip install .` gives working console commands, each with --version, and the installed
package finds its data files (the SQL, the log settings) in itself, not in this checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pipeline import __version__
from tests.support.jobs import PYTHON
from tests.support.jobs import ROOT

COMMANDS = ("events-pipeline", "events-generator", "events-status", "events-reconcile",
            "events-chart", "events-rebuild", "events-setup-db")


def run(*args: str, cwd: Path, timeout: float = 300, **env: str):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def fresh_venv(folder: Path) -> Path:
    done = run(sys.base_prefix + "/bin/python3", "-m", "venv", str(folder), cwd=folder.parent)
    assert done.returncode == 0, done.stderr
    return folder / "bin"


def source_copy(folder: Path) -> Path:
    """The checkout's tracked and new files, copied: a build writes build/ and *.egg-info
    beside the sources, and must not leave them in the checkout."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                 cwd=ROOT).stdout
    for name in filter(None, listed.split("\0")):
        source, target = ROOT / name, folder / name
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return folder


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = source_copy(tmp_path_factory.mktemp("source"))
    built = run(PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source),
                cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("events_pipeline-*.whl")
    return found


def test_the_wheel_installs_commands_that_find_their_data_outside_the_checkout(wheel,
                                                                                tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    # The dependencies are this project's venv's (installing pyspark again is the slow test's
    # work): a .pth file puts them on the new venv's path, after its own site-packages.
    purelib = Path(run(str(bin_dir / "python"), "-c",
                       "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=tmp_path).stdout.strip())
    (purelib / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in COMMANDS:
        version = run(str(bin_dir / command), "--version", cwd=elsewhere)
        assert (version.returncode, version.stdout.strip()) == (0, f"{command} {__version__}"), \
            version.stderr
    where = run(str(bin_dir / "python"), "-c",
                "import pipeline.resources as r, pipeline.write.schema as s;"
                " print(r.__file__); print(s.SCHEMA_FILE); print(r.data_file('config',"
                " 'log4j2.properties'))", cwd=elsewhere)
    module, schema, log4j = (Path(line) for line in where.stdout.split())
    assert module.is_relative_to(purelib) and not module.is_relative_to(ROOT)
    assert schema.is_relative_to(purelib) and schema.read_text() == \
        (ROOT / "sql" / "001_schema.sql").read_text()
    assert log4j.is_relative_to(purelib) and log4j.is_file()


@pytest.mark.slow
def test_pip_install_dot_in_a_fresh_venv(tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv")
    source = source_copy(tmp_path / "source")
    done = run(str(bin_dir / "python"), "-m", "pip", "install", "-q", str(source),
               cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for command in COMMANDS:
        version = run(str(bin_dir / command), "--version", cwd=tmp_path)
        assert version.stdout.strip() == f"{command} {__version__}", version.stderr
