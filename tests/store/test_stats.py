"""store_stats: what a store holds, and whether its data is real, simulated or mixed."""

from __future__ import annotations

from amoskys.store import IncidentRow, schema
from amoskys.store.alerts import Alert, Detection, add_feedback, save_alert, write_detections
from amoskys.store.stats import render_stats, store_stats
from amoskys.telemetry.telemetry_pb2 import Envelope

from .conftest import SEC, T0, flow, frame, process, snapshot


def simulate_into(store, hosts=("sim-1", "sim-2"), times=30) -> None:
    """What the simulator's sink does: frames from agent "simulator", data source "simulated", and incidents."""
    rows = [(host, T0 + i * 60 * SEC, [float(i), 1e9]) for host in hosts for i in range(times)]
    result = store.write([frame(["cpu_user_pct", "mem_used_bytes"], rows)], agent="simulator", data_source="simulated")
    assert result.stored == len(rows)
    store.write_incidents(
        [
            IncidentRow(hosts[0], "cpu_miner", T0, T0 + 600 * SEC, "simulator"),
            IncidentRow(hosts[1], "cpu_miner", T0, T0 + 600 * SEC, "simulator"),
            IncidentRow(hosts[1], "port_scan", T0 + 900 * SEC, T0 + 960 * SEC, "simulator"),
        ]
    )


def test_empty_store(store, store_path):
    stats = store_stats(store)
    assert stats["data_source"] == "empty"
    assert set(stats["counts"].values()) == {0}
    assert set(stats["counts"]) >= {"hosts", "host_metrics", "flows", "process_events", "envelopes", "incidents",
                                    "detections", "alerts", "feedback"}  # fmt: skip
    assert stats["schema_version"] == schema.SCHEMA_VERSION
    assert stats["journal_mode"] == "wal"
    assert stats["path"] == str(store_path)
    assert stats["size_bytes"] > 0
    assert stats["first_snapshot"] is None and stats["last_snapshot"] is None
    assert stats["agents"] == {} and stats["incidents_by_kind"] == {} and stats["ingest_outcomes"] == {}
    assert "data source  empty" in render_stats(stats)


def test_only_the_simulator_wrote(store):
    simulate_into(store)
    stats = store_stats(store)

    assert stats["data_source"] == "simulated"
    assert stats["agents"] == {"simulator": "simulated"}
    assert stats["counts"]["hosts"] == 2
    assert stats["counts"]["host_metrics"] == 60
    assert stats["counts"]["incidents"] == 3
    assert stats["incidents_by_kind"] == {"cpu_miner": 2, "port_scan": 1}
    assert stats["first_snapshot"] == "2026-01-01T00:00:00Z"
    assert stats["last_snapshot"] == "2026-01-01T00:29:00Z"
    assert stats["ingest_outcomes"] == {"stored": 60}
    text = render_stats(stats)
    assert "data source  simulated" in text and "simulator (simulated)" in text


def test_only_agents_wrote_is_real(store):
    store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="host-agent")
    store.write([snapshot("switch-1", T0, cpu_user_pct=2.0)], agent="snmp-agent", data_source="real")
    stats = store_stats(store)
    assert stats["data_source"] == "real"
    assert stats["agents"] == {"host-agent": "real", "snmp-agent": "real"}


def test_simulator_and_agents_together_is_mixed(store):
    simulate_into(store)
    store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="host-agent")
    stats = store_stats(store)
    assert stats["data_source"] == "mixed"
    assert stats["agents"] == {"host-agent": "real", "simulator": "simulated"}
    assert stats["counts"]["hosts"] == 3 and stats["counts"]["host_metrics"] == 61
    assert "data source  mixed" in render_stats(stats)


def test_counts_of_every_table(store):
    events = [snapshot("web-1", T0 + i * SEC, cpu_user_pct=1.0) for i in range(3)]
    events += [flow("web-1", T0), flow("web-1", T0 + SEC), process("web-1", T0), snapshot("web-1", T0, cpu_user_pct=-1.0)]
    envelope = Envelope(agent_id="host-agent", seq=1, ts_ns=T0, idempotency_key=b"k", payload=b"p", signature=b"s")
    store.write(events, agent="host-agent", envelope=envelope)
    write_detections(store, [Detection("web-1", T0, "fast", 10.0, "benign", {}),
                             Detection("web-2", T0, "fast", 20.0, "benign", {})])
    alert_id = save_alert(store, Alert("web-1", T0, T0 + SEC, 80.0, "high"))
    add_feedback(store, alert_id, True, "ana")
    add_feedback(store, alert_id, False, "bo")

    stats = store_stats(store)
    assert stats["counts"] == {
        "hosts": 2,
        "agents": 1,
        "host_metrics": 3,
        "flows": 2,
        "process_events": 1,
        "envelopes": 1,
        "incidents": 0,
        "detections": 2,
        "alerts": 1,
        "feedback": 2,
    }
    assert stats["ingest_outcomes"] == {"stored": 6, "rejected:bad_value": 1}
    assert stats["first_snapshot"] == "2026-01-01T00:00:00Z" and stats["last_snapshot"] == "2026-01-01T00:00:02Z"
    text = render_stats(stats)
    assert "snapshots    3" in text and "flows        2" in text and "rejected:bad_value 1" in text
