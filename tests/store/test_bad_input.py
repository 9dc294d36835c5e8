"""Bad input: every event ends in exactly one counted outcome, and nothing stored is lost."""

from __future__ import annotations

import hashlib
import time

import pytest

from amoskys.store import Snapshot, Store
from amoskys.store.outcomes import MAX_PROBLEMS
from amoskys.telemetry.telemetry_pb2 import Envelope, Event, EventBatch, ProcessEvent

from .conftest import SEC, T0, accounted, count, flow, frame, outcomes, process, snapshot, sql

BASE = Snapshot("base-1", T0, "agent", {"cpu_user_pct": 12.5, "mem_used_bytes": 4096.0})
GOOD = snapshot("web-1", T0 + SEC, cpu_user_pct=3.0)


@pytest.fixture
def seeded(store):
    """A store already holding one snapshot, which no later bad write may lose."""
    assert store.write([snapshot(BASE.host, BASE.ts_ns, **BASE.metrics)], agent="agent").stored == 1
    yield store
    assert store.snapshots(BASE.host) == [BASE]


def far_future() -> int:
    return time.time_ns() + 3600 * SEC


# (event, outcome, a fragment the problem must name)
BAD_EVENTS = {
    "unknown metric": (lambda: snapshot("web-2", T0, gpu_temp_celsius=61.0), "rejected:unknown_metric", "gpu_temp_celsius"),
    "wrong unit": (lambda: snapshot("web-2", T0, mem_used_kb=12.0), "rejected:wrong_unit", "mem_used_bytes"),
    "wrong unit among good": (
        lambda: snapshot("web-2", T0, cpu_user_pct=1.0, mem_used_kb=12.0), "rejected:wrong_unit", "mem_used_bytes"
    ),
    "percent 140": (lambda: snapshot("web-2", T0, cpu_user_pct=140.0), "rejected:bad_value", "cpu_user_pct"),
    "per-core percent 140": (lambda: snapshot("web-2", T0, cpu_core3_user_pct=140.0), "rejected:bad_value", "cpu_core3_user_pct"),
    "negative percent": (lambda: snapshot("web-2", T0, cpu_idle_pct=-0.5), "rejected:bad_value", "cpu_idle_pct"),
    "negative bytes": (lambda: snapshot("web-2", T0, mem_used_bytes=-1.0), "rejected:bad_value", "mem_used_bytes"),
    "NaN": (lambda: snapshot("web-2", T0, cpu_user_pct=1.0, cpu_idle_pct=float("nan")), "rejected:bad_value", "cpu_idle_pct"),
    "inf": (lambda: snapshot("web-2", T0, net_rx_bytes_total=float("inf")), "rejected:bad_value", "net_rx_bytes_total"),
    "-inf": (lambda: snapshot("web-2", T0, load_avg_1m=float("-inf")), "rejected:bad_value", "load_avg_1m"),
    "future timestamp": (lambda: snapshot("web-2", far_future(), cpu_user_pct=1.0), "rejected:future_timestamp", "future"),
    "zero timestamp": (lambda: snapshot("web-2", 0, cpu_user_pct=1.0), "rejected:bad_timestamp", "web-2"),
    "negative timestamp": (lambda: snapshot("web-2", -5, cpu_user_pct=1.0), "rejected:bad_timestamp", "-5"),
    "missing host": (lambda: snapshot("", T0, cpu_user_pct=1.0), "rejected:missing_host", "no host_id"),
    "empty snapshot": (lambda: snapshot("web-2", T0), "rejected:empty_snapshot", "no metrics"),
    "empty event": (lambda: Event(), "rejected:empty_event", "no metrics, frame"),
    "other agent": (lambda: snapshot("web-2", T0, source_agent="intruder", cpu_user_pct=1.0), "rejected:agent_mismatch", "intruder"),
    "flow protocol": (lambda: flow("web-2", T0, protocol="carrier-pigeon"), "rejected:bad_value", "carrier-pigeon"),
    "flow port": (lambda: flow("web-2", T0, dst_port=70000), "rejected:bad_value", "65535"),
    "flow address": (lambda: flow("web-2", T0, dst_ip=""), "rejected:bad_value", "address"),
    "flow duration": (lambda: flow("web-2", T0, duration_ns=-1), "rejected:bad_value", "duration"),
    "flow future": (lambda: flow("web-2", far_future()), "rejected:future_timestamp", "future"),
    "flow no host": (lambda: flow("", T0), "rejected:missing_host", "no host_id"),
    "flow other agent": (lambda: flow("web-2", T0, source_agent="intruder"), "rejected:agent_mismatch", "intruder"),
    "process kind": (lambda: process("web-2", T0, kind=ProcessEvent.KIND_UNSPECIFIED), "rejected:bad_value", "kind"),
    "process pid": (lambda: process("web-2", T0, pid=0), "rejected:bad_value", "pid"),
    "process zero time": (lambda: process("web-2", 0), "rejected:bad_timestamp", "web-2"),
}


@pytest.mark.parametrize("case", BAD_EVENTS)
def test_bad_event_is_rejected_alone_with_its_reason(seeded, case):
    make, outcome, fragment = BAD_EVENTS[case]
    result = seeded.write([GOOD, make()], agent="agent")

    assert outcomes(result) == {"stored": 1, outcome: 1}
    assert accounted(result) == 2 == result.total
    assert result.rejected == 1
    assert len(result.problems) == 1
    assert fragment in result.problems[0] and "\n" not in result.problems[0]
    assert [s.ts_ns for s in seeded.snapshots("web-1")] == [T0 + SEC]
    assert seeded.snapshots("web-2") == []
    assert seeded.ingest_outcomes() == {"stored": 2, outcome: 1}


def test_wrong_unit_message_names_the_canonical_metric(store):
    result = store.write([snapshot("web-1", T0, mem_used_kb=12.0)], agent="agent")
    assert outcomes(result) == {"rejected:wrong_unit": 1}
    assert "mem_used_kb" in result.problems[0] and "'mem_used_bytes'" in result.problems[0]


def test_flow_counter_beyond_sqlite_integer_range_is_rejected_not_fatal(seeded):
    """FlowRecord's byte and packet counters are uint64; SQLite holds at most 2**63 - 1.

    Such a flow must end as one counted rejection; the write must not fail as a whole.
    """
    huge = flow("web-2", T0, bytes_sent=2**64 - 1)
    result = seeded.write([GOOD, huge], agent="agent")

    assert outcomes(result) == {"stored": 1, "rejected:bad_value": 1}
    assert [s.ts_ns for s in seeded.snapshots("web-1")] == [T0 + SEC]


def test_frame_rows_are_counted_one_by_one(seeded):
    names = ["cpu_user_pct", "mem_used_bytes"]
    rows = [
        ("web-1", T0, [1.0, 100.0]),
        ("web-1", T0 + SEC, [140.0, 100.0]),  # bad value
        ("web-2", T0, [2.0, float("nan")]),  # bad value
        ("", T0, [3.0, 100.0]),  # missing host
        ("web-3", 0, [4.0, 100.0]),  # bad timestamp
        ("web-3", far_future(), [5.0, 100.0]),  # future
        ("web-3", T0, [6.0, 100.0]),
        ("web-3", T0, [6.0, 100.0]),  # duplicate in the same frame
    ]
    result = seeded.write([frame(names, rows)], agent="agent")

    assert outcomes(result) == {
        "stored": 2,
        "duplicate": 1,
        "rejected:bad_value": 2,
        "rejected:missing_host": 1,
        "rejected:bad_timestamp": 1,
        "rejected:future_timestamp": 1,
    }
    assert accounted(result) == len(rows)
    assert [s.metrics for s in seeded.snapshots("web-1")] == [{"cpu_user_pct": 1.0, "mem_used_bytes": 100.0}]
    assert seeded.snapshots("web-2") == []
    assert [s.metrics["cpu_user_pct"] for s in seeded.snapshots("web-3")] == [6.0]


@pytest.mark.parametrize(
    "names, hosts, stamps, values",
    [
        (["cpu_user_pct", "mem_used_bytes"], ["a", "b", "c"], [T0, T0, T0], [1.0] * 5),  # one value short
        (["cpu_user_pct", "mem_used_bytes"], ["a", "b", "c"], [T0, T0, T0], [1.0] * 7),  # one value too many
        (["cpu_user_pct"], ["a", "b", "c"], [T0, T0], [1.0] * 3),  # a timestamp missing
    ],
)
def test_frame_with_mismatched_columns_is_rejected_row_by_row(seeded, names, hosts, stamps, values):
    bad = Event()
    bad.frame.names.extend(names)
    bad.frame.host_ids.extend(hosts)
    bad.frame.ts_ns.extend(stamps)
    bad.frame.values.extend(values)
    result = seeded.write([GOOD, bad], agent="agent")

    assert outcomes(result) == {"stored": 1, "rejected:bad_frame": 3}
    assert "3 rows" in result.problems[0]
    assert seeded.hosts() == ["base-1", "web-1"]


def test_frame_with_a_bad_name_rejects_all_its_rows(seeded):
    rows = [("web-2", T0 + i * SEC, [1.0, 2.0]) for i in range(4)]
    result = seeded.write([GOOD, frame(["cpu_user_pct", "mem_used_kb"], rows)], agent="agent")
    assert outcomes(result) == {"stored": 1, "rejected:wrong_unit": 4}
    assert len(result.problems) == 1


def test_frame_from_another_agent_is_rejected_row_by_row(seeded):
    rows = [("web-2", T0 + i * SEC, [1.0]) for i in range(3)]
    result = seeded.write([GOOD, frame(["cpu_user_pct"], rows, source_agent="intruder")], agent="agent")
    assert outcomes(result) == {"stored": 1, "rejected:agent_mismatch": 3}
    assert seeded.snapshots("web-2") == []


def test_event_naming_its_own_agent_is_accepted(store):
    result = store.write([snapshot("web-1", T0, source_agent="agent", cpu_user_pct=1.0)], agent="agent")
    assert outcomes(result) == {"stored": 1}


def test_duplicate_snapshot_in_one_batch(seeded):
    same = snapshot("web-1", T0, cpu_user_pct=1.0)
    result = seeded.write([same, same, snapshot("web-1", T0, cpu_user_pct=2.0)], agent="agent")
    assert outcomes(result) == {"stored": 1, "duplicate": 2}
    assert len(seeded.snapshots("web-1")) == 1


def test_duplicate_snapshot_across_batches_keeps_the_first(seeded, store_path):
    assert seeded.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="agent").stored == 1
    again = seeded.write([snapshot("web-1", T0, cpu_user_pct=99.0)], agent="agent")
    as_frame = seeded.write([frame(["cpu_user_pct"], [("web-1", T0, [98.0])])], agent="agent")

    assert outcomes(again) == {"duplicate": 1} and outcomes(as_frame) == {"duplicate": 1}
    assert [s.metrics for s in seeded.snapshots("web-1")] == [{"cpu_user_pct": 1.0}]
    assert count(store_path, "host_metrics") == 2


def test_older_snapshot_than_the_newest_stored_is_out_of_order(seeded):
    assert seeded.write([snapshot("web-1", T0 + 10 * SEC, cpu_user_pct=1.0)], agent="agent").stored == 1

    late = seeded.write([snapshot("web-1", T0 + 5 * SEC, cpu_user_pct=2.0)], agent="agent")
    assert outcomes(late) == {"rejected:out_of_order": 1}
    assert "web-1" in late.problems[0]

    # the newest itself again is a duplicate, a newer one is stored, another agent is independent
    assert outcomes(seeded.write([snapshot("web-1", T0 + 10 * SEC, cpu_user_pct=1.0)], agent="agent")) == {"duplicate": 1}
    assert outcomes(seeded.write([snapshot("web-1", T0 + 11 * SEC, cpu_user_pct=3.0)], agent="agent")) == {"stored": 1}
    assert outcomes(seeded.write([snapshot("web-1", T0 + 5 * SEC, cpu_user_pct=4.0)], agent="other")) == {"stored": 1}
    assert [(s.ts_ns - T0) // SEC for s in seeded.snapshots("web-1")] == [5, 10, 11]


def test_out_of_order_is_judged_from_the_file_after_reopen(store_path):
    with Store.open(store_path) as store:
        store.write([snapshot("web-1", T0 + 10 * SEC, cpu_user_pct=1.0)], agent="agent")
    with Store.open(store_path) as store:
        result = store.write(
            [snapshot("web-1", T0 + 5 * SEC, cpu_user_pct=1.0), snapshot("web-1", T0 + 10 * SEC, cpu_user_pct=1.0)],
            agent="agent",
        )
        assert outcomes(result) == {"rejected:out_of_order": 1, "duplicate": 1}
        assert len(store.snapshots("web-1")) == 1


def test_unsorted_batch_newer_than_stored_is_all_stored(seeded):
    seeded.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="agent")
    result = seeded.write([snapshot("web-1", T0 + i * SEC, cpu_user_pct=float(i)) for i in (3, 1, 2)], agent="agent")
    assert outcomes(result) == {"stored": 3}
    assert [s.metrics["cpu_user_pct"] for s in seeded.snapshots("web-1")] == [1.0, 1.0, 2.0, 3.0]


def _envelope(events: list[Event], key: bytes, seq: int) -> Envelope:
    payload = EventBatch(agent_id="agent", seq=seq, ts_ns=T0, events=events).SerializeToString()
    return Envelope(agent_id="agent", seq=seq, ts_ns=T0, idempotency_key=key, payload=payload, signature=b"\x01" * 64)


def test_resent_envelope_is_a_duplicate_as_a_whole(seeded, store_path):
    events = [snapshot("web-1", T0 + i * SEC, cpu_user_pct=float(i)) for i in range(3)] + [
        flow("web-1", T0),
        snapshot("web-1", T0 + 9 * SEC, cpu_user_pct=400.0),  # bad, but part of the batch
    ]
    envelope = _envelope(events, b"key-0001", seq=1)

    first = seeded.write(events, agent="agent", envelope=envelope)
    assert outcomes(first) == {"stored": 4, "rejected:bad_value": 1}

    resent = seeded.write(events, agent="agent", envelope=envelope)
    assert outcomes(resent) == {"duplicate": 5}
    assert accounted(resent) == 5

    rows = sql(store_path, "SELECT id, idempotency_key, seq, payload, checksum, signature FROM envelopes")
    assert len(rows) == 1
    envelope_id, key, seq, payload, checksum, signature = rows[0]
    assert (key, seq, payload, signature) == (b"key-0001", 1, envelope.payload, envelope.signature)
    assert checksum == hashlib.sha256(envelope.payload).digest()
    linked = sql(store_path, "SELECT COUNT(*) FROM host_metrics WHERE envelope_id = ?", (envelope_id,))[0][0]
    assert linked == 3
    assert count(store_path, "flows") == 1
    assert seeded.ingest_outcomes() == {"stored": 5, "duplicate": 5, "rejected:bad_value": 1}


def test_new_envelope_key_is_stored(seeded, store_path):
    seeded.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="agent", envelope=_envelope([], b"k1", 1))
    second = seeded.write([snapshot("web-1", T0 + SEC, cpu_user_pct=1.0)], agent="agent", envelope=_envelope([], b"k2", 2))
    assert outcomes(second) == {"stored": 1}
    assert count(store_path, "envelopes") == 2


def test_mixed_batch_stores_the_good_and_counts_every_event(seeded):
    events = [
        snapshot("web-1", T0, cpu_user_pct=1.0),
        snapshot("web-1", T0, cpu_user_pct=1.0),  # duplicate
        snapshot("web-2", T0, cpu_user_pct=140.0),  # bad value
        snapshot("web-2", T0 + SEC, shoe_size_count=44.0),  # unknown
        snapshot("web-2", T0 + 2 * SEC, mem_used_kb=1.0),  # wrong unit
        frame(["cpu_user_pct"], [("web-3", T0 + i * SEC, [float(i)]) for i in range(5)]),
        frame(["cpu_user_pct"], [("web-3", T0, [1.0])] * 2, source_agent="intruder"),  # 2 rows, other agent
        flow("web-1", T0),
        flow("web-1", T0),  # duplicate
        flow("web-1", T0 + SEC, protocol="nope"),  # bad value
        process("web-1", T0),
        process("web-1", T0 + SEC, pid=-3),  # bad value
        Event(),  # empty
        snapshot("web-4", far_future(), cpu_user_pct=1.0),
    ]
    result = seeded.write(events, agent="agent")

    assert outcomes(result) == {
        "stored": 8,
        "duplicate": 2,
        "rejected:bad_value": 3,
        "rejected:unknown_metric": 1,
        "rejected:wrong_unit": 1,
        "rejected:agent_mismatch": 2,
        "rejected:empty_event": 1,
        "rejected:future_timestamp": 1,
    }
    assert accounted(result) == 19 == result.total
    assert result.stored == 8 and result.duplicate == 2 and result.rejected == 9
    assert [s.ts_ns for s in seeded.snapshots("web-3")] == [T0 + i * SEC for i in range(5)]
    assert seeded.snapshots("web-2") == [] and seeded.snapshots("web-4") == []


def test_problems_are_few_one_line_and_every_event_still_counted(store):
    events = [snapshot(f"web-{i}", T0, cpu_user_pct=100.0 + i + 1) for i in range(20)]
    result = store.write(events, agent="agent")

    assert outcomes(result) == {"rejected:bad_value": 20}
    assert len(result.problems) == MAX_PROBLEMS
    assert all(isinstance(p, str) and p and "\n" not in p for p in result.problems)


def test_problem_stays_one_line_when_the_host_id_holds_a_newline(store):
    """A hostile host id must not make a problem message span lines (log injection)."""
    event = snapshot("web-1\nstore: all events stored", T0, cpu_user_pct=140.0)
    result = store.write([event], agent="agent")

    assert accounted(result) == 1 and result.stored == 0
    assert len(result.problems) == 1
    assert "\n" not in result.problems[0] and "\r" not in result.problems[0]


def test_ingest_outcomes_add_up_and_persist(store_path):
    total: dict[str, int] = {}
    with Store.open(store_path) as store:
        for batch in (
            [snapshot("web-1", T0, cpu_user_pct=1.0), snapshot("web-1", T0, cpu_user_pct=1.0)],
            [snapshot("web-1", T0 - SEC, cpu_user_pct=1.0), snapshot("web-2", T0, cpu_user_pct=-1.0)],
            [frame(["cpu_user_pct"], [("web-3", T0, [1.0]), ("web-3", T0 + SEC, [1.0])], source_agent="x"), Event()],
        ):
            for outcome, n in outcomes(store.write(batch, agent="agent")).items():
                total[outcome] = total.get(outcome, 0) + n
        assert store.ingest_outcomes() == total
    assert total == {
        "stored": 1,
        "duplicate": 1,
        "rejected:out_of_order": 1,
        "rejected:bad_value": 1,
        "rejected:agent_mismatch": 2,
        "rejected:empty_event": 1,
    }
    with Store.open(store_path) as store:
        assert store.ingest_outcomes() == total
        store.write([snapshot("web-1", T0 + SEC, cpu_user_pct=1.0)], agent="agent")
        assert store.ingest_outcomes()["stored"] == 2
