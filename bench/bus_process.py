"""The bus as its own process for a benchmark: ``amoskys bus serve`` on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_bus(folder: Path, store: Path) -> tuple[subprocess.Popen, str]:
    """(process, address) of ``amoskys bus serve`` on store, with the certificates in folder/certs; exits with a
    one-line error when it does not start."""
    bus = subprocess.Popen(
        [sys.executable, "-m", "amoskys", "bus", "serve", "--store", str(store), "--certs", str(folder / "certs"),
         "--port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=folder,
    )  # fmt: skip
    line = bus.stdout.readline()
    if "listening on" not in line:
        bus.kill()
        raise SystemExit(f"error: the bus did not start: {line!r}")
    return bus, line.split("listening on ")[1].split()[0]
