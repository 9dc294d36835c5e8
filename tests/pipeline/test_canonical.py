"""Stage 1 on small fixed inputs whose every value is known."""

import math

import polars as pl
import pytest

from amoskys.pipeline.canonical import build_canonical, canonical_features, rate_name
from amoskys.pipeline.source import FLOW_COLUMNS, RawTelemetry, read_store
from amoskys.store import IncidentRow, Store
from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000
NO_FLOWS = pl.DataFrame(schema={c: (pl.String if c in ("host", "dst_ip", "protocol") else pl.Int64) for c in FLOW_COLUMNS})
NO_INCIDENTS = pl.DataFrame(schema={"host": pl.String, "kind": pl.String, "start_ns": pl.Int64, "end_ns": pl.Int64})


def raw(rows: list[dict], incidents: pl.DataFrame = NO_INCIDENTS) -> RawTelemetry:
    return RawTelemetry(pl.DataFrame(rows), NO_FLOWS, incidents, "real")


def run(rows, interval=5.0, max_fill=15.0, **kwargs):
    return build_canonical(raw(rows, **kwargs), interval, max_fill)


def sample(host, second, **metrics):
    return {"host": host, "ts_ns": T0 + int(second * S), "cpu_idle_pct": 90.0, "net_rx_bytes_total": 0.0, **metrics}


def column(frame, host, name):
    return frame.filter(pl.col("host") == host)[name].to_list()


def test_golden_rates_gauges_and_grid():
    rows = [sample("a", t, net_rx_bytes_total=1000.0 * t, cpu_idle_pct=80.0 + t) for t in (0, 5, 10, 15)]
    frame, report = run(rows)
    assert column(frame, "a", "net_rx_bytes_per_s") == [1000.0, 1000.0, 1000.0]  # first bucket has no rate
    assert column(frame, "a", "cpu_idle_pct") == [85.0, 90.0, 95.0]
    assert column(frame, "a", "cpu_busy_pct") == [15.0, 10.0, 5.0]
    assert frame["ts"].dt.epoch("ns").to_list() == [T0 + 5 * S, T0 + 10 * S, T0 + 15 * S]
    assert str(frame["ts"].dtype) == "Datetime(time_unit='ns', time_zone='UTC')"
    assert report.first_buckets_dropped == 1 and report.raw_rows == 4


def test_counter_wrap_at_2_32_and_reset():
    wrap = [sample("a", 0, net_rx_bytes_total=2.0**32 - 100), sample("a", 5, net_rx_bytes_total=400.0)]
    assert column(run(wrap)[0], "a", "net_rx_bytes_per_s") == [100.0]  # 500 bytes over 5 s
    reset = [sample("b", 0, net_rx_bytes_total=5_000_000.0), sample("b", 5, net_rx_bytes_total=250.0)]
    assert column(run(reset)[0], "b", "net_rx_bytes_per_s") == [50.0]  # restarted from 0


def test_duplicates_merge_into_the_first_snapshot_of_a_bucket():
    rows = [sample("a", 0), sample("a", 5, net_rx_bytes_total=500.0), sample("a", 5, net_rx_bytes_total=500.0),
            sample("a", 7, net_rx_bytes_total=700.0)]  # fmt: skip
    frame, report = run(rows)
    assert frame.height == 1 and report.merged_rows == 2
    assert column(frame, "a", "net_rx_bytes_per_s") == [100.0]  # the bucket's first snapshot, 500 over 5 s


def test_gaps_are_filled_up_to_max_fill_and_the_rest_dropped():
    # A 15 s gap (2 missing buckets, both filled) and a 70 s one (13 missing: the 3 within
    # 15 s of the last sample are filled, as a live detector would, the other 10 dropped).
    times = [0, 5, 10, 25, 30, 100, 105]
    frame, report = run([sample("a", t, net_rx_bytes_total=10.0 * t) for t in times], max_fill=15.0)
    seconds = [(t - T0) // S for t in frame["ts"].dt.epoch("ns").to_list()]
    assert seconds == [5, 10, 15, 20, 25, 30, 35, 40, 45, 100, 105]
    flags = dict(zip(seconds, column(frame, "a", "imputed_features")))
    # every feature of a filled row is imputed; an observed row only lacks the never-reported ones
    assert all(flags[s] == flags[15] > flags[25] == flags[100] for s in (15, 20, 35, 40, 45))
    assert report.filled_buckets == 5 and report.gap_buckets_dropped == 10
    # the rate after a gap spans the gap: 150 bytes over 15 s
    assert dict(zip(seconds, column(frame, "a", "net_rx_bytes_per_s")))[25] == pytest.approx(10.0)


def test_nan_and_inf_count_as_missing():
    rows = [sample("a", 0), sample("a", 5, cpu_idle_pct=70.0), sample("a", 10, cpu_idle_pct=math.nan),
            sample("a", 15, cpu_idle_pct=math.inf)]  # fmt: skip
    frame, report = run(rows)
    assert column(frame, "a", "cpu_idle_pct") == [70.0, 70.0, 70.0]
    assert report.nonfinite_values == 2
    assert column(frame, "a", "imputed_features")[1:] != [0.0, 0.0]


def test_single_row_host_and_never_reported_metric():
    rows = [sample("lonely", 0), sample("a", 0), sample("a", 5)]
    frame, report = run(rows)
    assert set(frame["host"]) == {"a"} and report.hosts_dropped == ["lonely"]
    assert "mem_total_bytes" in report.metrics_never_reported["a"]
    assert column(frame, "a", "mem_total_bytes") == [0.0]


def test_hosts_never_mix():
    rows = [sample("a", t, net_rx_bytes_total=1e9 + t) for t in (0, 5)] + [sample("b", t, net_rx_bytes_total=5.0 * t) for t in (0, 5)]
    frame, _ = run(rows)
    assert column(frame, "b", "net_rx_bytes_per_s") == [5.0]  # not (25 - 1e9) / ...


def test_labels_from_incident_windows():
    incidents = pl.DataFrame({"host": ["a"], "kind": ["port_scan"], "start_ns": [T0 + 10 * S], "end_ns": [T0 + 20 * S]})
    frame, _ = run([sample("a", t) for t in range(0, 30, 5)], incidents=incidents)
    assert column(frame, "a", "label") == [0, 1, 1, 0, 0]
    assert column(frame, "a", "incident") == [None, "port_scan", "port_scan", None, None]


def test_every_output_column_is_declared():
    frame, _ = run([sample("a", 0), sample("a", 5)])
    declared = {f.name for f in canonical_features()}
    assert set(frame.columns) - {"host", "ts", "label", "incident"} == declared
    assert all(f.unit and f.description for f in canonical_features())
    assert rate_name("tcp_out_rsts_total") == "tcp_out_rsts_per_s"


def test_read_store_gives_the_stored_snapshots(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        events = [Event(metrics=HostMetrics(host_id=h, ts_ns=T0 + i * 5 * S, metrics={"cpu_idle_pct": 50.0 + i}))
                  for h in ("x", "y") for i in range(3)]  # fmt: skip
        events.append(Event(metrics=HostMetrics(host_id="x", ts_ns=T0 + 99 * S, metrics={"load_avg_1m": 2.0})))
        store.write(events, agent="agent-1")
        store.write_incidents([IncidentRow("x", "fork_storm", T0, T0 + 10 * S, "scenario")])
        telemetry = read_store(store, hosts=["x"], since_ns=T0 + 5 * S)
    snaps = telemetry.snapshots.sort("ts_ns")
    assert snaps["host"].to_list() == ["x"] * 3
    assert snaps["cpu_idle_pct"].to_list() == [51.0, 52.0, None]
    assert snaps["load_avg_1m"].to_list() == [None, None, 2.0]
    assert telemetry.incidents["kind"].to_list() == ["fork_storm"] and telemetry.data_source == "real"


def test_labels_and_rates_with_several_hosts_given_out_of_order():
    incidents = pl.DataFrame({"host": ["b"], "kind": ["fork_storm"], "start_ns": [T0 + 5 * S], "end_ns": [T0 + 15 * S]})
    rows = [sample(h, t, net_rx_bytes_total=(100.0 if h == "a" else 7.0) * t) for t in (15, 0, 10, 5) for h in ("b", "a")]
    frame, report = run(rows, incidents=incidents)
    assert frame["host"].to_list() == ["a"] * 3 + ["b"] * 3  # sorted by host, then time
    assert column(frame, "a", "label") == [0, 0, 0] and column(frame, "b", "label") == [1, 1, 0]
    assert column(frame, "a", "net_rx_bytes_per_s") == [100.0] * 3 and column(frame, "b", "net_rx_bytes_per_s") == [7.0] * 3
    assert report.merged_rows == 0


def test_core_shares_and_gaps_with_several_hosts_given_out_of_order():
    # Core 1 of host a lacks a value and core 0 a finite one: the busiest and idlest core are among those left.
    cores = {0: {"cpu_core0_idle_pct": 10.0, "cpu_core1_idle_pct": 70.0, "cpu_core2_idle_pct": 40.0},
             5: {"cpu_core0_idle_pct": 20.0, "cpu_core2_idle_pct": 90.0},
             30: {"cpu_core0_idle_pct": math.nan, "cpu_core1_idle_pct": 50.0, "cpu_core2_idle_pct": 60.0}}  # fmt: skip
    rows = [sample("a", t, cpu_core0_user_pct=1.0, **cores[t]) for t in (30, 5, 0)]
    rows += [sample("b", t, cpu_core0_idle_pct=25.0, cpu_core0_user_pct=1.0) for t in (10, 0, 5)]
    frame, report = run(rows, max_fill=10.0)
    assert frame["host"].to_list() == ["a"] * 4 + ["b"] * 2
    assert [(t - T0) // S for t in frame["ts"].dt.epoch("ns").to_list()] == [5, 10, 15, 30, 5, 10]
    assert column(frame, "a", "cpu_core_max_busy_pct") == [80.0, 80.0, 80.0, 50.0]  # 10, 15 s: forward filled
    assert column(frame, "a", "cpu_core_spread_pct") == [70.0, 70.0, 70.0, 10.0]
    assert column(frame, "b", "cpu_core_max_busy_pct") == [75.0, 75.0] and column(frame, "b", "cpu_core_spread_pct") == [0.0, 0.0]
    assert report.filled_buckets == 2 and report.gap_buckets_dropped == 2 and report.nonfinite_values == 1
    assert report.merged_rows == 0
