"""Attack-shaped load on this machine, for demonstrations and tests: loopback only, bounded in time and count.

- ``loopback_scan``: a connect() scan of closed ports on 127.0.0.1. Every attempt is
  refused with a RST, which the kernel counts as a failed attempt (/proc/net/snmp
  ``Tcp AttemptFails``): what the security pack's port-scan indicators watch.
- ``cpu_burn``: busy processes, one per core, for a while.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time

MAX_ATTEMPTS = 200_000


def closed_port() -> int:
    """A loopback TCP port nothing listens on (one the kernel just handed out and took back)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loopback_scan(seconds: float, per_second: int = 500) -> int:
    """Refused connection attempts to 127.0.0.1 for seconds, at most per_second and MAX_ATTEMPTS; returns how many."""
    port, attempts = closed_port(), 0
    deadline = time.monotonic() + seconds
    while (now := time.monotonic()) < deadline and attempts < MAX_ATTEMPTS:
        second_ends = now + 1.0
        for _ in range(per_second):
            with socket.socket() as s:
                s.settimeout(0.5)
                try:
                    s.connect(("127.0.0.1", port))
                except OSError:
                    pass  # refused: the point
            attempts += 1
        time.sleep(max(0.0, second_ends - time.monotonic()))
    return attempts


def _spin(until: float) -> None:
    while time.monotonic() < until:
        pass


def cpu_burn(seconds: float, processes: int | None = None) -> None:
    """Keep processes (default: every core) busy for seconds, then return."""
    until = time.monotonic() + seconds
    # spawned, not forked: a fork of a process running gRPC threads (the detector's) is not safe
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_spin, args=(until,), daemon=True) for _ in range(processes or os.cpu_count() or 1)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 5)
        if worker.is_alive():
            worker.terminate()
