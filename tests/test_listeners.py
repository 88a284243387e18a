"""Nothing listens beyond loopback: a streaming job started as a user starts it (no
SPARK_LOCAL_IP in its environment) has every listening socket of every process it started
(Python, the JVM, Python workers) on 127.0.0.0/8 or ::1."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import time
from pathlib import Path

from tests.support.jobs import kill_group
from tests.support.jobs import run_generator
from tests.support.jobs import run_job
from tests.support.jobs import start_job

LISTEN = "0A"


def listening_sockets() -> dict[str, tuple[str, int]]:
    """inode -> (address, port) of every TCP socket in LISTEN state on this machine."""
    found = {}
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != LISTEN:
                continue
            hex_address, hex_port = local.split(":")
            # /proc prints each 32-bit word of the address in host (little-endian) order.
            raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1]
                           for i in range(0, len(hex_address), 8))
            found[inode] = (str(ipaddress.ip_address(raw if width == 16 else raw[:4])),
                            int(hex_port, 16))
    return found


def session_pids(session: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == session:
                    pids.append(int(entry))
            except ProcessLookupError:
                pass
    return pids


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    except FileNotFoundError:
        pass
    return inodes


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None
                              and ip.ipv4_mapped.is_loopback)


def test_a_running_job_listens_on_loopback_only(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "2", "--seed", "17")
    env = database.job_env()
    env.pop("SPARK_LOCAL_IP", None)  # as a user starts it: the job must choose loopback itself
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    job = start_job(env, "--source", str(source), "--checkpoint", str(tmp_path / "ck"),
                    "--metrics-port", str(metrics_port), log_path=tmp_path / "job.log")
    try:
        deadline = time.monotonic() + 180
        while database.query("SELECT count(*) FROM ingest_files")[0][0] < 2:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the job committed nothing in time"
            time.sleep(0.3)
        listening = listening_sockets()
        owned = {}
        for pid in session_pids(job.pid):
            for inode in socket_inodes(pid) & listening.keys():
                owned[(pid, inode)] = listening[inode]
        log = (tmp_path / "job.log").read_text()
        assert len(owned) >= 2, (owned, log[-2000:])  # at least the UI and the driver's RPC
        outside = {key: address for key, (address, _port) in owned.items()
                   if not is_loopback(address)}
        assert not outside, f"listening beyond loopback: {outside}"
        assert metrics_port in {port for _address, port in owned.values()}, owned
        assert "Spark UI http://127.0.0.1:" in log, log[-2000:]
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) == 0
    finally:
        kill_group(job)
    print(f"{len(owned)} listening sockets of the job's processes, all on loopback:"
          f" {sorted(set(owned.values()))}")


def test_under_spark_submit_without_spark_local_ip_the_ui_stays_off(tmp_path, database):
    source = tmp_path / "data"
    run_generator(source, "--files", "1", "--seed", "18")
    env = database.job_env()
    env.pop("SPARK_LOCAL_IP", None)
    done = run_job(env, "--source", str(source), "--checkpoint", str(tmp_path / "ck"),
                   "--once", submit=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Spark UI off: under spark-submit" in output, output[-3000:]
    assert re.search(r"query id [-0-9a-f]+, Spark UI off", output), output[-3000:]
    # The user's own --conf wins over the job's choice.
    done = run_job(env, "--source", str(source), "--checkpoint", str(tmp_path / "ck2"),
                   "--once", submit=True, submit_conf={"spark.ui.enabled": "true"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Spark UI off" not in output, output[-3000:]
