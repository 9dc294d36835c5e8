"""The whole live path on loopback: ``amoskys up`` (real bus, real host agent, detector) collects a baseline,
trains, settles, scores live, and within 30 s of a port scan and CPU load that this test starts itself, stores a
threat level of high or above with the port-scan rule, covered by an alert. (Quiet before the attack is not
asserted: a baseline of 75 s on an idle machine cannot learn that, say, a little non-loopback traffic is normal;
see the README's "Short baselines".)
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

from amoskys.detect.policy import LEVEL_FLOOR
from amoskys.detect.workload import closed_port, cpu_burn, loopback_scan
from amoskys.store.alerts import first_alerted_hit
from amoskys.store.store import Store

BASELINE_S = 75
ALERT_WITHIN_S = 30


def write_config(folder) -> str:
    path, port = folder / "amoskys.toml", closed_port()
    path.write_text(f"""
[bus]
port = {port}
metrics_port = 0
certs = "{folder / 'certs'}"
[agent]
bus = "127.0.0.1:{port}"
certs = "{folder / 'certs'}"
interval_seconds = 1.0
outbox_dir = "{folder / 'outbox'}"
[pipeline]
interval_seconds = 1.0
out = "{folder / 'pipeline'}"
[detect]
registry = "{folder / 'pipeline' / 'registry'}"
micro_batch_ms = 50.0
""")
    return str(path)


def read_until(process: subprocess.Popen, marker: str, timeout_s: float) -> str:
    seen, deadline = "", time.monotonic() + timeout_s
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and process.poll() is None, f"no {marker!r} within {timeout_s} s:\n{seen}"
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            seen += os.read(process.stdout.fileno(), 65536).decode(errors="replace")
    return seen


def test_a_loopback_attack_raises_an_alert_within_30_s(tmp_path):
    store = tmp_path / "amoskys.db"
    config = write_config(tmp_path)
    up = subprocess.Popen([sys.executable, "-m", "amoskys", "--config", config, "up", "--store", str(store),
                           "--baseline-seconds", str(BASELINE_S)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        seen = read_until(up, "of settling", BASELINE_S + 180)
        settle_s = float(re.search(r"scoring after ([0-9.]+) s of settling", seen).group(1))
        time.sleep(settle_s + 10)  # some live rows first
        attack_ns, started = time.time_ns(), time.monotonic()
        for workload in (cpu_burn, loopback_scan):
            threading.Thread(target=workload, args=(ALERT_WITHIN_S,), daemon=True).start()
        seen = None
        while seen is None and time.monotonic() - started < ALERT_WITHIN_S:
            time.sleep(1)
            with Store.open(store, create=False) as opened:
                seen = first_alerted_hit(opened, "port_scan", LEVEL_FLOOR["high"], attack_ns)
        assert seen is not None, f"no alert on the port scan within {ALERT_WITHIN_S} s"
    finally:
        up.send_signal(signal.SIGINT)
        output = up.communicate(timeout=60)[0].decode(errors="replace")
    assert up.returncode == 0, output
    assert "stopped the detector, the agents and the bus" in output
