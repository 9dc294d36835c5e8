"""Subscribe: what was stored from a position on, then new commits as they land."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from amoskys.bus.client import BusClient
from amoskys.bus.server import MAX_SUBSCRIBERS
from amoskys.errors import TransportError

from .conftest import frame_events

WAIT_S = 10


def test_subscribe_from_a_position_then_live(bus, client_a, certs_dir):
    for seq in (1, 2, 3):
        client_a.publish_events(frame_events(seq * 10), seq=seq)
    received: queue.Queue = queue.Queue()
    with BusClient(bus.listening.address, certs_dir, "b") as detector:
        stream = detector.subscribe(after_position=0)
        first = [next(stream) for _ in range(3)]
        assert [b.batch.seq for b in first] == [1, 2, 3]
        assert [len(b.batch.events[0].frame.host_ids) for b in first] == [10, 20, 30]
        assert all(b.agent_id == "a" for b in first)
        positions = [b.position for b in first]
        assert positions == sorted(positions) and len(set(positions)) == 3

        # from the middle: only what came after
        middle = detector.subscribe(after_position=positions[0])
        assert [next(middle).batch.seq for _ in range(2)] == [2, 3]
        middle.close()

        # live: a reader waiting at the end gets each new commit
        reader = threading.Thread(target=lambda: received.put(next(stream)), daemon=True)
        reader.start()
        time.sleep(0.1)  # let it reach the wait
        client_a.publish_events(frame_events(7), seq=4)
        live = received.get(timeout=WAIT_S)
        assert live.batch.seq == 4 and live.position > positions[-1]
        assert len(live.batch.events[0].frame.host_ids) == 7
        stream.close()


def test_subscribers_are_limited_and_a_leaving_one_frees_its_place(bus, client_a):
    client_a.publish_events(frame_events(3), seq=1)
    streams = [client_a.subscribe() for _ in range(MAX_SUBSCRIBERS)]
    for stream in streams:
        assert next(stream).batch.seq == 1  # each is now waiting for the next commit
    with pytest.raises(TransportError, match="RESOURCE_EXHAUSTED"):
        next(client_a.subscribe())
    streams.pop().close()
    deadline = time.monotonic() + 2  # less than the subscribers' periodic wake-up (5 s)
    while bus.metrics_page().count("amoskys_bus_subscribers 15") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "amoskys_bus_subscribers 15" in bus.metrics_page()  # at once, not at the next periodic wake-up
    streams.append(client_a.subscribe())
    assert next(streams[-1]).batch.seq == 1
    for stream in streams:
        stream.close()
