"""`amoskys agent ...` as a user runs it: the console script in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from amoskys.bus import certs
from amoskys.bus.server import BusServer
from amoskys.config import BusConfig

from .test_runtime import wait_until

AMOSKYS = str(Path(sys.executable).parent / "amoskys")


def amoskys(*args, cwd):
    return subprocess.run([AMOSKYS, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_help_lists_the_three_agents(tmp_path):
    out = amoskys("agent", "--help", cwd=tmp_path).stdout
    for kind in ("host", "flow", "snmp"):
        assert f"    {kind}" in out
    snmp = amoskys("agent", "snmp", "--help", cwd=tmp_path).stdout
    for option in ("--bus", "--certs", "--name", "--interval", "--outbox", "--target", "--community"):
        assert option in snmp


@pytest.mark.parametrize(
    "args, message",
    [
        (["agent", "host", "--interval", "0"], "input error: --interval must be a positive number"),
        (["agent", "flow", "--bus", "nowhere"], "input error: address 'nowhere' is not HOST:PORT"),
        (["agent", "host", "--name", "two words"], "input error: agent name 'two words'"),
        (["agent", "host", "--certs", "missing"], "config error: no CA in missing"),
        (["agent", "snmp"], "input error: no SNMP device to poll"),
    ],
)
def test_bad_input_is_one_line_and_status_1(tmp_path, args, message):
    done = amoskys(*args, cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"amoskys: {message}"), done.stderr


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the host collector reads Linux /proc")
def test_host_agent_runs_against_the_bus_and_stops_on_sigint(tmp_path):
    certs.init(tmp_path / "certs", agents=("host",))
    settings = BusConfig(host="127.0.0.1", port=0, metrics_port=0)
    bus = BusServer(tmp_path / "store.db", tmp_path / "certs", settings).start()
    try:
        agent = subprocess.Popen(
            [AMOSKYS, "agent", "host", "--bus", bus.listening.address, "--certs", "certs", "--interval", "0.2",
             "--outbox", "outbox"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_until(lambda: len(bus.store.snapshots(os.uname().nodename)) >= 2, timeout=30)
        finally:
            agent.send_signal(signal.SIGINT)
            _, stderr = agent.communicate(timeout=30)
        assert agent.returncode == 0, stderr
        assert "agent host (host) started" in stderr and "SIGINT: stopping" in stderr and "agent host stopped" in stderr
        assert (tmp_path / "outbox" / "host.db").exists()
    finally:
        bus.stop()
