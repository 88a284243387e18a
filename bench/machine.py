"""What the figures were measured on: they mean little without it."""

from __future__ import annotations

import os
import platform
import subprocess
import zipfile
from datetime import UTC
from datetime import datetime
from pathlib import Path

from bench.jobs import DRIVER_JAR
from bench.jobs import MYSQL_DRIVER_JAR
from bench.jobs import ROOT


def _first_line(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _jar_version(jar: Path) -> str:
    try:
        with zipfile.ZipFile(jar) as zf:
            for line in zf.read("META-INF/MANIFEST.MF").decode().splitlines():
                if line.startswith(("Implementation-Version:", "Bundle-Version:")):
                    return line.split(":", 1)[1].strip()
    except (OSError, KeyError, zipfile.BadZipFile):
        pass
    return "unknown"


def describe(mariadb_version: str) -> dict:
    import pyspark

    dirty = _first_line(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _memory_gib(),
        "cpu_model": _cpu_model(),
        "os": _os_name(),
        "python": platform.python_version(),
        "java": _first_line(["java", "-version"]),
        "spark": pyspark.__version__,
        "mariadb": mariadb_version,
        "jdbc_driver": f"MariaDB Connector/J {_jar_version(DRIVER_JAR)}",
        "jdbc_driver_mysqlj": f"MySQL Connector/J {_jar_version(MYSQL_DRIVER_JAR)}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _first_line(["git", "rev-parse", "--short", "HEAD"]),
        "git_worktree": "modified" if dirty not in ("", "unknown") else "clean",
    }
