"""The flow collector on this machine: it sees the connections the test opens, with their ports and bytes."""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager

import pytest

from amoskys.agents.flow import FlowCollector, parse_ss
from amoskys.store import Store
from amoskys.telemetry import validate

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="the flow collector reads Linux /proc")


@contextmanager
def connection(family=socket.AF_INET, host="127.0.0.1"):
    """A listening socket, a client connected to it, and the accepted server side."""
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname()[:2])
    server, _ = listener.accept()
    try:
        yield client, server
    finally:
        for s in (client, server, listener):
            s.close()


def flows_between(events, a: socket.socket | int, b: socket.socket | int):
    """The flow records of a's end and of b's end of one connection (sockets or their ports), by local port."""
    ports = {s if isinstance(s, int) else s.getsockname()[1] for s in (a, b)}
    return {e.flow.src_port: e.flow for e in events if {e.flow.src_port, e.flow.dst_port} == ports}


def exchange(client, server, up: int, down: int) -> None:
    client.sendall(b"u" * up)
    received = 0
    while received < up:
        received += len(server.recv(65536))
    server.sendall(b"d" * down)
    received = 0
    while received < down:
        received += len(client.recv(65536))
    time.sleep(0.05)  # let the ACKs land


def test_first_collect_is_a_baseline_then_the_connection_shows_with_its_ports_and_bytes():
    collector = FlowCollector(host_id="test-host", source_agent="flow")
    assert collector.collect() == []
    with connection() as (client, server):
        exchange(client, server, 7000, 300)
        ports = client.getsockname()[1], server.getsockname()[1]
        flows = flows_between(collector.collect(), client, server)
        mine, theirs = flows[client.getsockname()[1]], flows[server.getsockname()[1]]
        assert (mine.src_ip, mine.dst_ip, mine.dst_port) == ("127.0.0.1", "127.0.0.1", server.getsockname()[1])
        assert mine.protocol == "tcp" and mine.state == "ESTABLISHED" and mine.host_id == "test-host"
        assert validate.check_flow(mine) is None and validate.check_flow(theirs) is None
        if collector.counters_source == "ss":
            assert (mine.bytes_sent, mine.bytes_received) == (7000, 300)
            assert (theirs.bytes_sent, theirs.bytes_received) == (300, 7000)
            assert mine.packets_sent >= 1 and mine.packets_received >= 1

        time.sleep(0.02)
        exchange(client, server, 1000, 0)
        later = flows_between(collector.collect(), client, server)[client.getsockname()[1]]
        assert later.duration_ns > 0
        if collector.counters_source == "ss":
            assert (later.bytes_sent, later.bytes_received) == (1000, 0)  # this interval only
    gone = flows_between(collector.collect(), *ports)
    closing = {"CLOSED", "TIME_WAIT", "FIN_WAIT1", "FIN_WAIT2", "CLOSE_WAIT", "LAST_ACK"}
    assert {f.state for f in gone.values()} <= closing
    assert gone  # the end of the flow is reported


def test_without_ss_the_proc_tables_still_show_the_flow_without_counters():
    collector = FlowCollector(use_ss=False)
    collector.collect()
    with connection(socket.AF_INET6, "::1") as (client, server):
        exchange(client, server, 100, 100)
        flows = flows_between(collector.collect(), client, server)
        mine = flows[client.getsockname()[1]]
        assert (mine.src_ip, mine.dst_ip, mine.state) == ("::1", "::1", "ESTABLISHED")
        assert (mine.bytes_sent, mine.packets_sent) == (0, 0) and collector.counters_source == "none"


def test_connected_udp_sockets_are_flows_unconnected_ones_are_not():
    collector = FlowCollector()
    collector.collect()
    connected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unconnected = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        connected.connect(("127.0.0.1", 9))
        unconnected.bind(("127.0.0.1", 0))
        udp = [e.flow for e in collector.collect() if e.flow.protocol == "udp"]
        assert any(f.src_port == connected.getsockname()[1] and f.dst_port == 9 for f in udp)
        assert not any(f.src_port == unconnected.getsockname()[1] for f in udp)
    finally:
        connected.close()
        unconnected.close()


def test_loopback_flows_can_be_left_out():
    collector = FlowCollector(include_loopback=False)
    collector.collect()
    with connection() as (client, server):
        assert flows_between(collector.collect(), client, server) == {}


def test_the_store_takes_the_flows(tmp_path):
    collector = FlowCollector(host_id="test-host", source_agent="flow")
    collector.collect()
    with connection() as (client, server):
        exchange(client, server, 10, 10)
        events = collector.collect()
    with Store.open(tmp_path / "store.db") as store:
        result = store.write(events, agent="flow")
    assert result.stored == len(events) >= 2, result.problems


def test_ss_output_with_ipv6_scopes_time_wait_and_old_kernels():
    text = (
        "ESTAB 0 0 [fe80::1]%eth0:22 [fe80::2]%eth0:50000\n\t cubic bytes_sent:5 bytes_acked:6 bytes_received:9 "
        "segs_out:3 segs_in:4\nTIME-WAIT 0 0 10.0.0.1:41000 10.0.0.2:80\n\t\n"
        "SYN-SENT 0 1 10.0.0.1:41001 10.0.0.3:443\n\t cubic segs_out:1\n"
        "FIN-WAIT-1 0 0 10.0.0.1:41002 10.0.0.4:443\n\t bytes_acked:10 segs_out:2 segs_in:2\n"
    )  # fmt: skip
    sockets = parse_ss(text)
    assert [(s.key, s.state, s.counters) for s in sockets] == [
        (("tcp", "fe80::1", 22, "fe80::2", 50000), "ESTABLISHED", (5, 9, 3, 4)),
        (("tcp", "10.0.0.1", 41000, "10.0.0.2", 80), "TIME_WAIT", None),
        (("tcp", "10.0.0.1", 41001, "10.0.0.3", 443), "SYN_SENT", (0, 0, 1, 0)),
        (("tcp", "10.0.0.1", 41002, "10.0.0.4", 443), "FIN_WAIT1", (10, 0, 2, 2)),  # no bytes_sent: bytes_acked
    ]
