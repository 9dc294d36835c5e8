"""What goes into the store comes back out exactly: snapshots, frames, flows, processes, incidents."""

from __future__ import annotations

import math

from amoskys.store import IncidentRow, Snapshot, Store
from amoskys.store import schema
from amoskys.telemetry.telemetry_pb2 import ProcessEvent

from .conftest import SEC, T0, count, flow, frame, outcomes, process, snapshot, sql

# Values chosen so that any lossy step (float32, text, rounding) would show.
EXACT = {
    "cpu_user_pct": 0.1 + 0.2,
    "cpu_core3_user_pct": 33.333333333333336,
    "cpu_core0_idle_pct": 100.0,
    "cpu_core12_iowait_pct": 0.0,
    "mem_used_bytes": 17_179_869_184.0,
    "mem_total_bytes": 2.0**53 + 2,  # above 2**53: not every integer is representable
    "net_rx_bytes_total": 1e300,
    "uptime_seconds": 5e-324,  # the smallest subnormal double
    "load_avg_1m": 1.0 / 3.0,
    "process_count": 412.0,
}


def test_host_metrics_snapshot_comes_back_exactly(store):
    result = store.write([snapshot("web-1", T0, **EXACT)], agent="host-agent")

    assert result.stored == 1 and result.total == 1
    assert store.snapshots("web-1") == [Snapshot("web-1", T0, "host-agent", EXACT)]
    back = store.snapshots("web-1")[0].metrics
    assert back["cpu_core3_user_pct"] == 33.333333333333336
    assert back["mem_total_bytes"] == 2.0**53 + 2
    assert math.copysign(1.0, back["cpu_core12_iowait_pct"]) == 1.0


def test_metric_frame_rows_of_several_hosts_with_unsorted_times(store):
    names = ["cpu_user_pct", "mem_used_bytes", "cpu_core3_system_pct"]
    order = [3, 0, 2, 1]  # not in time order within the batch
    rows = [
        (host, T0 + i * SEC, [10.0 * h + i + 0.25, 1e9 * (h + 1) + i, 1.5 * i])
        for i in order
        for h, host in enumerate(["db-1", "web-1", "web-2"])
    ]
    result = store.write([frame(names, rows)], agent="snmp-agent")

    assert outcomes(result) == {"stored": 12}
    assert store.hosts() == ["db-1", "web-1", "web-2"]
    for h, host in enumerate(["db-1", "web-1", "web-2"]):
        assert store.snapshots(host) == [
            Snapshot(
                host,
                T0 + i * SEC,
                "snmp-agent",
                {"cpu_user_pct": 10.0 * h + i + 0.25, "mem_used_bytes": 1e9 * (h + 1) + i, "cpu_core3_system_pct": 1.5 * i},
            )
            for i in range(4)
        ]


def test_frames_and_single_snapshots_mix_in_one_write(store):
    events = [
        snapshot("web-1", T0, cpu_user_pct=5.0),
        frame(["cpu_user_pct", "load_avg_5m"], [("web-1", T0 + SEC, [6.0, 0.5]), ("web-2", T0, [7.0, 0.75])]),
        snapshot("web-1", T0 + 2 * SEC, cpu_user_pct=8.0, mem_free_bytes=1024.0),
    ]
    assert outcomes(store.write(events, agent="a")) == {"stored": 4}
    assert [(s.ts_ns, s.metrics) for s in store.snapshots("web-1")] == [
        (T0, {"cpu_user_pct": 5.0}),
        (T0 + SEC, {"cpu_user_pct": 6.0, "load_avg_5m": 0.5}),
        (T0 + 2 * SEC, {"cpu_user_pct": 8.0, "mem_free_bytes": 1024.0}),
    ]
    assert store.snapshots("web-2") == [Snapshot("web-2", T0, "a", {"cpu_user_pct": 7.0, "load_avg_5m": 0.75})]


def test_two_agents_may_report_the_same_host_at_the_same_time(store):
    assert store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="snmp").stored == 1
    assert store.write([snapshot("web-1", T0, cpu_user_pct=2.0)], agent="host").stored == 1
    assert [(s.agent, s.metrics["cpu_user_pct"]) for s in store.snapshots("web-1")] == [("host", 2.0), ("snmp", 1.0)]


def test_flows_round_trip(store, store_path):
    events = [
        flow("web-1", T0, bytes_sent=2**63 - 1, packets_sent=7),
        flow("web-1", T0 + SEC, protocol="udp", src_port=53, dst_ip="10.0.0.53", dst_port=53, state="CLOSED"),
        flow("db-1", T0, src_ip="fe80::1", dst_ip="fe80::2", protocol="icmpv6", src_port=0, dst_port=0),
    ]
    assert outcomes(store.write(events, agent="flow-agent")) == {"stored": 3}

    rows = sql(
        store_path,
        "SELECT h.name, f.ts_ns, a.name, f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.bytes_sent, "
        "f.bytes_received, f.packets_sent, f.packets_received, f.duration_ns, f.state "
        "FROM flows f JOIN hosts h ON h.id = f.host_id JOIN agents a ON a.id = f.agent_id ORDER BY h.name, f.ts_ns",
    )
    assert rows == [
        ("db-1", T0, "flow-agent", "fe80::1", 0, "fe80::2", 0, "icmpv6", 1200, 5400, 10, 12, 2 * SEC, "ESTABLISHED"),
        ("web-1", T0, "flow-agent", "10.0.0.5", 51000, "93.184.216.34", 443, "tcp", 2**63 - 1, 5400, 7, 12, 2 * SEC,
         "ESTABLISHED"),
        ("web-1", T0 + SEC, "flow-agent", "10.0.0.5", 53, "10.0.0.53", 53, "udp", 1200, 5400, 10, 12, 2 * SEC,
         "CLOSED"),
    ]  # fmt: skip


def test_process_events_round_trip(store, store_path):
    events = [
        process("web-1", T0, pid=100, ppid=1, name="nginx", exe="/usr/sbin/nginx", username="www-data"),
        process("web-1", T0 + SEC, kind=ProcessEvent.EXIT, pid=100, ppid=1, name="nginx", exe="/usr/sbin/nginx",
                username="www-data", exit_code=-9),
    ]  # fmt: skip
    assert outcomes(store.write(events, agent="host-agent")) == {"stored": 2}
    rows = sql(
        store_path,
        "SELECT h.name, p.ts_ns, p.kind, p.pid, p.ppid, p.name, p.exe, p.username, p.exit_code "
        "FROM process_events p JOIN hosts h ON h.id = p.host_id ORDER BY p.ts_ns",
    )
    assert rows == [
        ("web-1", T0, "start", 100, 1, "nginx", "/usr/sbin/nginx", "www-data", 0),
        ("web-1", T0 + SEC, "exit", 100, 1, "nginx", "/usr/sbin/nginx", "www-data", -9),
    ]


def test_incidents_round_trip_and_repeat_is_not_new(store):
    incidents = [
        IncidentRow("web-2", "port_scan", T0 + 60 * SEC, T0 + 120 * SEC, "simulator"),
        IncidentRow("web-1", "cpu_miner", T0 + 300 * SEC, T0 + 900 * SEC, "simulator"),
        IncidentRow("web-1", "brute_force", T0, T0 + 60 * SEC, "replay"),
    ]
    assert store.write_incidents(incidents) == 3
    assert store.write_incidents(incidents[:2]) == 0

    assert store.incidents() == [incidents[2], incidents[1], incidents[0]]  # by host, then start
    assert store.incidents("web-1") == [incidents[2], incidents[1]]
    assert store.incidents("nobody") == []
    assert store.hosts() == ["web-1", "web-2"]


def test_everything_survives_close_and_reopen(store_path):
    with Store.open(store_path) as store:
        store.write([snapshot("web-1", T0 + i * SEC, cpu_user_pct=float(i)) for i in range(5)], agent="a")
        store.write([flow("web-1", T0), process("web-1", T0)], agent="a")
        store.write_incidents([IncidentRow("web-1", "port_scan", T0, T0 + SEC, "simulator")])
        before = (store.snapshots("web-1"), store.incidents(), store.hosts(), store.ingest_outcomes())

    with Store.open(store_path, create=False) as store:
        after = (store.snapshots("web-1"), store.incidents(), store.hosts(), store.ingest_outcomes())
    assert after == before
    assert [s.metrics["cpu_user_pct"] for s in after[0]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert after[3] == {"stored": 7}
    assert count(store_path, "flows") == 1 and count(store_path, "process_events") == 1


def test_snapshots_time_range_is_half_open_and_limited(store):
    store.write([snapshot("web-1", T0 + i * SEC, cpu_user_pct=float(i)) for i in range(10)], agent="a")
    store.write([snapshot("web-2", T0 + i * SEC, cpu_user_pct=50.0) for i in range(10)], agent="a")

    def seconds(**kwargs) -> list[int]:
        return [(s.ts_ns - T0) // SEC for s in store.snapshots("web-1", **kwargs)]

    assert seconds() == list(range(10))
    assert seconds(since_ns=T0 + 3 * SEC, until_ns=T0 + 7 * SEC) == [3, 4, 5, 6]
    assert seconds(since_ns=T0 + 3 * SEC + 1, until_ns=T0 + 7 * SEC + 1) == [4, 5, 6, 7]
    assert seconds(since_ns=T0 + 8 * SEC) == [8, 9]
    assert seconds(until_ns=T0 + 2 * SEC) == [0, 1]
    assert seconds(since_ns=T0 + 5 * SEC, until_ns=T0 + 5 * SEC) == []
    assert seconds(limit=3) == [0, 1, 2]
    assert seconds(since_ns=T0 + 4 * SEC, limit=2) == [4, 5]
    assert seconds(limit=0) == []
    assert store.snapshots("no-such-host") == []


def test_snapshots_until_zero_is_an_empty_range(store):
    """[since, 0) holds no snapshot: every stored timestamp is positive."""
    store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="a")
    assert store.snapshots("web-1", until_ns=0) == []


def test_hosts_lists_every_host_once_sorted(store):
    store.write([snapshot(h, T0, cpu_user_pct=1.0) for h in ("zeta", "alpha", "mid")], agent="a")
    store.write([snapshot("alpha", T0 + SEC, cpu_user_pct=1.0), flow("beta", T0)], agent="a")
    assert store.hosts() == ["alpha", "beta", "mid", "zeta"]


def test_file_is_wal_with_full_sync_and_intact(store, store_path):
    store.write([snapshot("web-1", T0 + i * SEC, cpu_user_pct=1.0) for i in range(100)], agent="a")

    assert store._writer_conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._writer_conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sql(store_path, "PRAGMA journal_mode") == [("wal",)]
    assert sql(store_path, "PRAGMA integrity_check") == [("ok",)]
    assert sql(store_path, "PRAGMA application_id") == [(schema.APPLICATION_ID,)]
    assert sql(store_path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert count(store_path, "host_metrics") == 100
