"""The agent runtime against a real gRPC bus on 127.0.0.1: delivery, outages, RETRY, stale, refusals."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.agents.outbox import Outbox
from amoskys.agents.runtime import AgentRuntime, Backoff
from amoskys.bus import bus_pb2
from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics

from .loopback_bus import InsecureSender, LoopbackBus

T0 = 1_767_225_600_000_000_000
AGENT = "test-agent"


class CountingCollector:
    """Returns per_collect numbered snapshots per collect, up to `limit` collects; remembers them all."""

    name = "counting"

    def __init__(self, per_collect: int = 3, limit: int | None = None):
        self.per_collect, self.limit = per_collect, limit
        self.produced: list[int] = []
        self.closed = False
        self.lock = threading.Lock()

    def collect(self) -> list[Event]:
        with self.lock:
            if self.limit is not None and len(self.produced) >= self.limit * self.per_collect:
                return []
            numbers = range(len(self.produced), len(self.produced) + self.per_collect)
            self.produced.extend(numbers)
        return [Event(metrics=HostMetrics(host_id="h1", ts_ns=T0 + n, metrics={"process_forks_total": float(n)}))
                for n in numbers]  # fmt: skip

    @property
    def collects(self) -> int:
        return len(self.produced) // self.per_collect

    def close(self) -> None:
        self.closed = True


def numbers(events) -> list[int]:
    return [int(e.metrics.metrics["process_forks_total"]) for e in events]


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def bus(key):
    server = LoopbackBus(key.public_key()).start()
    yield server
    server.stop()


@pytest.fixture
def sender(bus):
    client = InsecureSender(bus.address)
    yield client
    client.close()


@pytest.fixture
def outbox(tmp_path):
    with Outbox.open(tmp_path / "outbox" / f"{AGENT}.db", max_bytes=1 << 20) as box:
        yield box


def make_runtime(collector, sender, key, outbox, **options) -> AgentRuntime:
    settings = dict(interval_s=0.05, batch_max_events=2, backoff_initial_s=0.05, backoff_max_s=0.2, seed=1)
    settings.update(options)
    return AgentRuntime(collector, sender, key, AGENT, outbox, **settings)


@contextmanager
def running(runtime: AgentRuntime):
    thread = threading.Thread(target=runtime.run)
    thread.start()
    try:
        yield runtime
    finally:
        runtime.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "runtime did not stop"


def test_every_event_reaches_the_bus_once_in_batches_in_order(key, bus, sender, outbox):
    collector = CountingCollector(per_collect=3, limit=5)
    with running(make_runtime(collector, sender, key, outbox)) as runtime:
        wait_until(lambda: len(bus.servicer.stored_events()) == 15)
        wait_until(lambda: len(outbox) == 0)
    assert sorted(numbers(bus.servicer.stored_events())) == list(range(15))
    assert all(len(batch.events) <= 2 for batch in bus.servicer.stored.values())
    seqs = bus.servicer.stored_seqs()
    assert seqs == sorted(set(seqs)) and len(seqs) == 10  # 5 collects of 3 events in batches of at most 2
    assert runtime.stats["sent_events"] == 15 and collector.closed


def test_bus_down_buffers_on_disk_across_an_agent_restart_then_drains(key, bus, sender, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="amoskys.agents")
    path = tmp_path / "outbox" / "restart.db"
    collector = CountingCollector(per_collect=2)
    bus.stop()
    with Outbox.open(path) as box, running(make_runtime(collector, sender, key, box)):
        wait_until(lambda: collector.collects >= 4 and len(box) >= 8)  # collection goes on while the bus is away
    assert "bus unreachable" in caplog.text and len(bus.servicer.stored) == 0
    buffered = len(collector.produced)

    # A new agent process: the outbox on disk still holds everything, the bus comes back.
    collector.limit = collector.collects + 2
    bus.start()
    with Outbox.open(path) as box, running(make_runtime(collector, sender, key, box)):
        wait_until(lambda: len(bus.servicer.stored_events()) == len(collector.produced))
        wait_until(lambda: len(box) == 0)
    assert len(collector.produced) > buffered
    assert sorted(numbers(bus.servicer.stored_events())) == collector.produced  # every event exactly once
    seqs = bus.servicer.stored_seqs()
    assert seqs == sorted(set(seqs))  # strictly increasing across the restart


def test_bus_going_away_and_back_is_logged_with_the_backlog(key, bus, sender, outbox, caplog):
    caplog.set_level(logging.INFO, logger="amoskys.agents")
    collector = CountingCollector(per_collect=1)
    with running(make_runtime(collector, sender, key, outbox)):
        wait_until(lambda: len(bus.servicer.stored) >= 2)
        bus.stop()
        wait_until(lambda: "bus unreachable" in caplog.text and len(outbox) >= 3)
        bus.start()
        wait_until(lambda: "bus back after" in caplog.text)
        collector.limit = collector.collects
        wait_until(lambda: len(outbox) == 0 and len(bus.servicer.stored_events()) == len(collector.produced))
    assert sorted(numbers(bus.servicer.stored_events())) == collector.produced
    back = next(r.getMessage() for r in caplog.records if "bus back after" in r.getMessage())
    assert "envelopes" in back and "bytes" in back


def test_retry_is_honoured_and_the_same_envelope_is_resent(key, bus, sender, outbox):
    bus.servicer.script.retry = 2
    bus.servicer.script.retry_after_ms = 300
    collector = CountingCollector(per_collect=1, limit=1)
    with running(make_runtime(collector, sender, key, outbox)) as runtime:
        wait_until(lambda: len(bus.servicer.stored) == 1)
    arrivals = bus.servicer.arrivals
    assert [a.status for a in arrivals] == [bus_pb2.Ack.RETRY, bus_pb2.Ack.RETRY, bus_pb2.Ack.OK]
    assert len({a.seq for a in arrivals}) == 1  # the very same envelope
    assert all(later.at - earlier.at >= 0.3 for earlier, later in zip(arrivals, arrivals[1:]))
    assert runtime.stats["retries"] == 2


def test_a_stale_backlog_is_resealed_with_new_seqs_and_no_event_is_lost_or_doubled(key, bus, sender, outbox, caplog):
    collector = CountingCollector(per_collect=2)
    bus.stop()
    runtime = make_runtime(collector, sender, key, outbox, clock_skew_guard_s=0.0)
    with running(runtime):
        wait_until(lambda: len(outbox) >= 6)
        old_seqs = {item.envelope.seq for item in outbox.peek(100)}
        # The bus comes back and calls everything sealed so far stale (as after a long outage).
        bus.servicer.script.stale_before_ns = time.time_ns()
        bus.start()
        wait_until(lambda: runtime.stats["resealed_envelopes"] > 0)
        collector.limit = collector.collects
        wait_until(lambda: len(outbox) == 0 and len(bus.servicer.stored_events()) == len(collector.produced))
    assert sorted(numbers(bus.servicer.stored_events())) == collector.produced
    seqs = bus.servicer.stored_seqs()
    assert seqs == sorted(set(seqs)) and not old_seqs & set(seqs)
    assert "stale" in caplog.text


def test_stale_for_a_fresh_envelope_means_skewed_clocks_and_keeps_it(key, bus, sender, outbox, caplog):
    bus.servicer.script.stale_before_ns = 2**62  # the bus's clock is far ahead
    collector = CountingCollector(per_collect=1, limit=2)
    with running(make_runtime(collector, sender, key, outbox)) as runtime:
        wait_until(lambda: sum(a.status == bus_pb2.Ack.INVALID for a in bus.servicer.arrivals) >= 3)
    assert runtime.stats["resealed_envelopes"] == 0 and len(outbox) == 2  # nothing dropped, nothing resealed
    assert caplog.text.count("clocks of this host and the bus disagree") == 1


def test_refused_envelopes_are_counted_logged_once_per_reason_and_dropped(key, bus, sender, outbox, caplog):
    bus.servicer.script.invalid = ["oversized", "oversized"]
    collector = CountingCollector(per_collect=2, limit=3)
    with running(make_runtime(collector, sender, key, outbox, batch_max_events=2)):
        wait_until(lambda: len(outbox) == 0 and len(bus.servicer.arrivals) >= 3 and collector.collects == 3)
    assert numbers(bus.servicer.stored_events()) == [4, 5]  # the first two envelopes were refused
    assert outbox.counters()["rejected:oversized"] == 4
    assert sum("oversized" in r.getMessage() for r in caplog.records) == 1


def test_an_agent_the_bus_does_not_know_yet_keeps_its_backlog(key, bus, sender, outbox, caplog):
    bus.servicer.script.unauthorized = ["unknown_key"] * 3  # then the key is registered
    collector = CountingCollector(per_collect=1, limit=2)
    with running(make_runtime(collector, sender, key, outbox)):
        wait_until(lambda: len(bus.servicer.stored_events()) == 2)
    assert numbers(bus.servicer.stored_events()) == [0, 1] and outbox.counters() == {}
    assert caplog.text.count("unknown_key") == 1


def test_a_broken_sender_is_logged_and_sending_goes_on(key, bus, sender, outbox, caplog):
    class Flaky:
        calls = 0

        def publish(self, envelope):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("bug in the client")
            return sender.publish(envelope)

    collector = CountingCollector(per_collect=1, limit=2)
    with running(make_runtime(collector, Flaky(), key, outbox)):
        wait_until(lambda: len(bus.servicer.stored_events()) == 2)
    assert "sending failed (RuntimeError: bug in the client)" in caplog.text


def test_a_wrong_signing_key_is_unauthorized(key, bus, sender, outbox):
    collector = CountingCollector(per_collect=1, limit=2)
    with running(make_runtime(collector, sender, Ed25519PrivateKey.generate(), outbox)):
        wait_until(lambda: len(outbox) == 0 and collector.collects == 2)
    assert not bus.servicer.stored
    assert outbox.counters()["rejected:bad_signature"] == 2


def test_a_failing_collector_is_logged_and_collection_goes_on(key, bus, sender, outbox, caplog):
    class Flaky(CountingCollector):
        calls = 0

        def collect(self):
            self.calls += 1
            if self.calls <= 2:
                raise OSError("no such file: /proc/stat")
            return super().collect()

    collector = Flaky(per_collect=1, limit=2)
    with running(make_runtime(collector, sender, key, outbox)) as runtime:
        wait_until(lambda: len(bus.servicer.stored) == 2)
    assert runtime.stats["collect_errors"] == 2
    assert caplog.text.count("collector failed") == 1


def test_stop_is_prompt_while_backing_off(key, bus, sender, outbox):
    bus.stop()
    runtime = make_runtime(CountingCollector(), sender, key, outbox, interval_s=30.0, backoff_initial_s=30.0,
                           backoff_max_s=30.0)  # fmt: skip
    with running(runtime):
        wait_until(lambda: runtime.stats["transport_failures"] >= 1)
        started = time.monotonic()
    assert time.monotonic() - started < 5.0  # `running` joined the runtime; it did not sit out the 30 s


def test_backoff_doubles_up_to_its_cap_with_jitter():
    import random

    backoff = Backoff(0.5, 30.0, random.Random(3))
    delays = [backoff.next() for _ in range(10)]
    caps = [min(30.0, 0.5 * 2**i) for i in range(10)]
    assert all(cap / 2 <= d <= cap for d, cap in zip(delays, caps))
    backoff.reset()
    assert backoff.next() <= 0.5
