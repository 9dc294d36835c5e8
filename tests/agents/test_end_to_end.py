"""The host agent with the real bus: mutual TLS, signatures, the durable store; the bus restarted mid-run."""

from __future__ import annotations

import os
import threading
import time

import pytest

from amoskys.agents.host import HostCollector
from amoskys.agents.outbox import Outbox
from amoskys.agents.runtime import AgentRuntime
from amoskys.bus import certs
from amoskys.bus.client import BusClient
from amoskys.bus.server import BusServer
from amoskys.config import BusConfig

from .test_runtime import running, wait_until

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the host collector reads Linux /proc")

AGENT = "host-e2e"
HOST = "e2e-machine"


class RecordingHostCollector(HostCollector):
    """The real host collector, remembering the timestamps of the snapshots it made."""

    def __init__(self):
        super().__init__(host_id=HOST, source_agent=AGENT)
        self.stamps: list[int] = []
        self.lock = threading.Lock()
        self.paused = False

    def collect(self):
        if self.paused:
            return []
        events = super().collect()
        with self.lock:
            self.stamps += [e.metrics.ts_ns for e in events]
        return events


def test_host_agent_through_the_real_bus_survives_a_bus_restart(tmp_path):
    certs_dir = tmp_path / "certs"
    certs.init(certs_dir, agents=(AGENT,))
    store_path = tmp_path / "store.db"
    bus = BusServer(store_path, certs_dir, BusConfig(host="127.0.0.1", port=0, metrics_port=0)).start()
    port = int(bus.listening.address.rpartition(":")[2])
    client = BusClient(bus.listening.address, certs_dir, AGENT, timeout_s=5.0)
    collector = RecordingHostCollector()
    key = certs.load_agent_credentials(certs_dir, AGENT).signing_key
    try:
        with Outbox.open(tmp_path / "outbox" / f"{AGENT}.db") as outbox:
            runtime = AgentRuntime(collector, client, key, AGENT, outbox, interval_s=0.2, batch_max_events=10,
                                   backoff_initial_s=0.1, backoff_max_s=0.5, seed=2)  # fmt: skip
            with running(runtime):
                wait_until(lambda: len(bus.store.snapshots(HOST)) >= 2)
                bus.stop()
                wait_until(lambda: len(outbox) >= 3)  # buffered while the bus is down
                bus = BusServer(store_path, certs_dir, BusConfig(host="127.0.0.1", port=port, metrics_port=0)).start()
                wait_until(lambda: len(outbox) == 0, timeout=30)
                collector.paused = True
                time.sleep(0.3)  # a collect already under way finishes
                wait_until(lambda: len(outbox) == 0 and len(bus.store.snapshots(HOST)) == len(collector.stamps))
            stored = [s.ts_ns for s in bus.store.snapshots(HOST)]
            assert sorted(stored) == sorted(collector.stamps)  # every snapshot exactly once
            assert runtime.stats["transport_failures"] >= 1
            assert not any(k.startswith("rejected") for k in outbox.counters())
    finally:
        client.close()
        bus.stop()
