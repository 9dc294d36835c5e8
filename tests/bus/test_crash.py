"""kill -9 of `amoskys bus serve` under load: no acked event is lost, and resends are duplicates."""

from __future__ import annotations

import os
import signal
import threading
import time

from amoskys.bus import certs
from amoskys.bus.bus_pb2 import Ack
from amoskys.bus.client import BusClient
from amoskys.errors import TransportError
from amoskys.telemetry.telemetry_pb2 import Envelope

from .conftest import ServeProcess, frame_events, sql

AGENTS = ("p0", "p1", "p2", "p3")
ROWS = 100  # snapshots per envelope
ACKS_BEFORE_KILL = 300  # envelopes acked before the kill: a second or two of load
MAX_LOAD_S = 10.0
MAX_ENVELOPES_PER_AGENT = 2000  # a bound, should the kill come late


class Publisher(threading.Thread):
    """Publishes envelope after envelope as one agent, resending on RETRY, until the bus goes away."""

    def __init__(self, address: str, certs_dir, agent: str):
        super().__init__(daemon=True)
        self.address, self.certs_dir, self.agent = address, certs_dir, agent
        self.sent: list[Envelope] = []
        self.acked: list[Envelope] = []
        self.error: str | None = None

    def run(self) -> None:
        with BusClient(self.address, self.certs_dir, self.agent, timeout_s=10) as client:
            for seq in range(1, MAX_ENVELOPES_PER_AGENT + 1):
                envelope = client.seal(frame_events(ROWS, host_prefix=self.agent), seq)
                self.sent.append(envelope)
                try:
                    ack = client.publish(envelope)
                    while ack.status == Ack.RETRY:
                        time.sleep(ack.retry_after_ms / 1000)
                        ack = client.publish(envelope)
                except TransportError as exc:
                    self.error = str(exc)
                    return
                assert (ack.status, ack.stored) == (Ack.OK, ROWS), ack
                self.acked.append(envelope)


def rows_by_key(store) -> dict[bytes, int]:
    """{idempotency key: snapshots stored with it} for every stored envelope."""
    rows = sql(store, "SELECT e.idempotency_key, COUNT(m.id) FROM envelopes e "
                      "LEFT JOIN host_metrics m ON m.envelope_id = e.id GROUP BY e.id")  # fmt: skip
    return dict(rows)


def test_kill_9_under_load_loses_no_acked_event_and_resends_are_duplicates(tmp_path):
    folder = tmp_path / "certs"
    certs.init(folder, agents=AGENTS)
    store = tmp_path / "bus.db"

    bus = ServeProcess(store, folder, cwd=tmp_path)
    publishers = [Publisher(bus.address, folder, agent) for agent in AGENTS]
    try:
        for publisher in publishers:
            publisher.start()
        deadline = time.monotonic() + MAX_LOAD_S
        while sum(len(p.acked) for p in publishers) < ACKS_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # well into the load: every publisher has an envelope in flight
        acked_before_kill = sum(len(p.acked) for p in publishers)
        os.kill(bus.proc.pid, signal.SIGKILL)
        code, _ = bus.finish()
    finally:
        if bus.proc.poll() is None:
            bus.proc.kill()
    assert code == -signal.SIGKILL
    for publisher in publishers:
        publisher.join(30)
        assert not publisher.is_alive() and publisher.error is not None  # each saw the bus go away
    assert acked_before_kill >= ACKS_BEFORE_KILL, "the kill came before any real load"

    # Every acked envelope is in the store, whole.
    assert sql(store, "PRAGMA integrity_check") == [("ok",)]
    stored = rows_by_key(store)
    acked = [e for p in publishers for e in p.acked]
    sent = [e for p in publishers for e in p.sent]
    assert all(stored.get(e.idempotency_key) == ROWS for e in acked), "an acked envelope is missing or partial"
    assert set(stored) <= {e.idempotency_key for e in sent}
    assert all(n == ROWS for n in stored.values())  # nothing half-stored either

    # Restarted on the same store: resending everything stores each envelope exactly once.
    bus = ServeProcess(store, folder, cwd=tmp_path)
    try:
        clients = {agent: BusClient(bus.address, folder, agent) for agent in AGENTS}
        for envelope in sent:
            ack = clients[envelope.agent_id].publish(envelope)
            assert ack.status == Ack.OK, ack
            if envelope.idempotency_key in stored:  # acked, or committed just before the kill
                assert (ack.stored, ack.duplicate) == (0, ROWS)
            else:  # in flight at the kill and never committed: stored now
                assert (ack.stored, ack.duplicate) == (ROWS, 0)
        again = clients["p0"].publish(publishers[0].acked[0])
        assert (again.status, again.duplicate) == (Ack.OK, ROWS)
        for client in clients.values():
            client.close()
    finally:
        bus.proc.send_signal(signal.SIGTERM)
        code, err = bus.finish()
    assert code == 0, err
    after = rows_by_key(store)
    assert set(after) == {e.idempotency_key for e in sent} and set(after.values()) == {ROWS}
    assert sql(store, "SELECT COUNT(*) FROM host_metrics") == [(len(sent) * ROWS,)]  # no double rows
