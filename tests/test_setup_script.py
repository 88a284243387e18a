"""The set-up's choices on other Debian/Ubuntu releases: which JDK package it installs and
when it installs python3-venv, with `apt-cache` and `python3` answering as those releases do
(small stand-in commands first on PATH; the functions are the script's own)."""

from __future__ import annotations

import os
import subprocess

from tests.support.jobs import ROOT

POLICY = """{name}:
  Installed: (none)
  Candidate: {candidate}
  Version table:
"""


def run_functions(tmp_path, script: str, packages: dict[str, str], python_ok: bool = True):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    cases = "".join(f'  {name}) printf %s "{POLICY.format(name=name, candidate=version)}";;\n'
                    for name, version in packages.items())
    (bin_dir / "apt-cache").write_text(
        f'#!/bin/sh\ncase "$2" in\n{cases}  *) printf "%s:\\n  Installed: (none)\\n'
        f'  Candidate: (none)\\n" "$2";;\nesac\n')
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexit {0 if python_ok else 1}\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SETUP_FUNCTIONS_ONLY="1")
    return subprocess.run(["bash", "-c", f"source scripts/setup.sh; {script}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_the_first_available_jdk_17_or_newer_is_chosen(tmp_path):
    bookworm = run_functions(tmp_path, "jdk_package", {
        "openjdk-17-jre-headless": "17.0.21.1+2-1~deb12u1"})
    assert bookworm.stdout.strip() == "openjdk-17-jre-headless"
    trixie = run_functions(tmp_path, "jdk_package", {"openjdk-21-jre-headless": "21.0.9+10-1"})
    assert trixie.stdout.strip() == "openjdk-21-jre-headless"


def test_no_jdk_package_is_one_clear_line(tmp_path):
    none = run_functions(tmp_path, "jdk_package", {})
    assert none.returncode == 1 and none.stdout == ""
    assert none.stderr.strip() == ("[setup] no OpenJDK 17, 21 or 25 package here: install"
                                   " Java 17 or newer")


def test_venv_support_is_detected(tmp_path):
    assert run_functions(tmp_path, "venv_ready", {}, python_ok=True).returncode == 0
    assert run_functions(tmp_path, "venv_ready", {}, python_ok=False).returncode == 1
