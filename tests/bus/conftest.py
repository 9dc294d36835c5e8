"""Shared pieces of the bus tests: real certificates, a real bus on loopback, real stores.

Certificates are made once per session by ``amoskys.bus.certs`` (agents ``a`` and
``b``); each test gets its own store and bus on a free port. The test modules import
the builders with ``from .conftest import ...``.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from amoskys.bus import certs
from amoskys.bus.client import BusClient
from amoskys.bus.server import BusServer
from amoskys.config import BusConfig
from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame

NAMES = ["cpu_user_pct", "mem_used_bytes"]
SEC = 1_000_000_000
REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60
_clock = itertools.count()


def fresh_ts() -> int:
    """A timestamp a little in the past, newer than every one handed out before (snapshots must advance)."""
    return time.time_ns() - 600 * SEC + next(_clock) * 1000


def frame_events(rows: int = 50, hosts: int = 5, host_prefix: str = "web", names=NAMES) -> list[Event]:
    """One MetricFrame event of rows snapshots over hosts hosts, timestamps newer than any before."""
    body = MetricFrame(names=list(names))
    for j in range(rows):
        body.host_ids.append(f"{host_prefix}-{j % hosts}")
        body.ts_ns.append(fresh_ts())
        body.values.extend([12.5, 1e9][: len(names)] + [1.0] * (len(names) - 2))
    return [Event(frame=body)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sql(path: Path, query: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def bus_config(**overrides) -> BusConfig:
    return replace(BusConfig(host="127.0.0.1", port=0, metrics_port=free_port()), **overrides)


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bus") / "certs"
    certs.init(folder, agents=("a", "b"))
    return folder


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def bus(store_path, certs_dir):
    with BusServer(store_path, certs_dir, bus_config()) as server:
        yield server


@pytest.fixture
def client_a(bus, certs_dir):
    with BusClient(bus.listening.address, certs_dir, "a") as client:
        yield client


class ServeProcess:
    """``python -m amoskys bus serve`` in a subprocess, with its listening line read."""

    def __init__(self, store: Path, certs_dir: Path, cwd: Path, metrics_port: int = 0):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "amoskys", "bus", "serve", "--store", str(store), "--certs", str(certs_dir),
             "--port", "0", "--metrics-port", str(metrics_port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._first: queue.Queue = queue.Queue()
        self._pump = threading.Thread(target=self._read_stdout, daemon=True)
        self._pump.start()
        try:
            self.first_line = self._first.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.proc.kill()
            raise AssertionError(f"the bus did not start within {START_TIMEOUT_S} s") from None
        assert "listening on" in self.first_line, f"{self.first_line!r} {self._stderr()}"
        self.address = self.first_line.split("listening on ")[1].split()[0]

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if len(self.lines) == 1:
                self._first.put(self.lines[0])
        self._first.put("")  # ended without a word

    def _stderr(self) -> str:
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return "(still running)"
        return self.proc.stderr.read()

    def finish(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Wait for the process to end; (exit code, stderr)."""
        try:
            code = self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(timeout_s)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return code, err
