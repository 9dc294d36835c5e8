"""Stage 3 on rows whose every ratio is known, on zero denominators, and on a simulated fleet."""

import numpy as np
import polars as pl
import pytest

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.cross import cross_arrays, cross_defs
from amoskys.pipeline.features import CROSS, apply
from amoskys.pipeline.temporal import temporal_defs

ROW = {
    "cpu_busy_pct": 40.0, "cpu_iowait_pct": 10.0, "cpu_count": 4.0, "load_avg_1m": 6.0,
    "process_count": 200.0, "thread_count": 500.0, "context_switches_per_s": 8000.0,
    "mem_total_bytes": 1000.0, "mem_used_bytes": 600.0, "swap_used_bytes": 100.0,
    "net_rx_bytes_per_s": 30000.0, "net_tx_bytes_per_s": 6000.0,
    "net_rx_packets_per_s": 20.0, "net_tx_packets_per_s": 30.0,
    "net_rx_errors_per_s": 1.0, "net_tx_errors_per_s": 0.0, "net_rx_drops_per_s": 2.0, "net_tx_drops_per_s": 3.0,
    "disk_read_bytes_per_s": 300.0, "disk_write_bytes_per_s": 900.0,
    "tcp_active_opens_per_s": 8.0, "tcp_passive_opens_per_s": 2.0, "tcp_attempt_fails_per_s": 6.0,
    "tcp_established_count": 40.0,
}  # fmt: skip

EXPECTED = {
    "cpu_busy_per_process": 40 / 200,
    "cpu_busy_per_kilo_context_switches": 40 / 8,
    "mem_pressure_index": 0.7,
    "net_tx_rx_bytes_ratio": 0.2,
    "net_rx_bytes_per_packet": 1500.0,
    "net_tx_bytes_per_packet": 200.0,
    "net_error_rate": 1 / 50,
    "net_drop_rate": 5 / 50,
    "disk_read_share": 0.25,
    "cpu_iowait_share": 0.25,
    "processes_per_core": 50.0,
    "threads_per_process": 2.5,
    "load_per_core": 1.5,
    "tcp_opens_per_s": 10.0,
    "tcp_opens_per_established": 0.25,
    "tcp_attempt_fail_share": 0.75,
}


def compute(rows: list[dict]) -> dict:
    defs = cross_defs(PipelineConfig())
    return apply(pl.DataFrame(rows), defs).select(d.feature.name for d in defs).to_dict(as_series=False)


def test_golden_row():
    got = compute([ROW])
    assert set(got) == set(EXPECTED)
    for name, value in EXPECTED.items():
        assert got[name] == [pytest.approx(value)], name


def test_zero_denominators_give_null_not_inf():
    got = compute([dict.fromkeys(ROW, 0.0), {**ROW, "net_rx_packets_per_s": 0.0, "net_tx_packets_per_s": 0.0}])
    assert all(values[0] is None for name, values in got.items() if name != "tcp_opens_per_s")
    assert got["tcp_opens_per_s"][0] == 0.0  # a sum, not a ratio: 0 is a reading
    assert got["net_error_rate"][1] is None and got["net_rx_bytes_per_packet"][1] is None
    assert got["net_tx_rx_bytes_ratio"][1] == pytest.approx(0.2)


def test_memory_pressure_index_counts_swap_beyond_ram():
    got = compute([{**ROW, "mem_used_bytes": 950.0, "swap_used_bytes": 300.0}])
    assert got["mem_pressure_index"] == [pytest.approx(1.25)]


def test_simulated_fleet_is_finite(simulated_split):
    defs = cross_defs(PipelineConfig())
    out = apply(simulated_split.canonical, defs).select(d.feature.name for d in defs)
    assert out.height == simulated_split.canonical.height
    bad = out.select(pl.all().is_infinite().any() | pl.all().is_nan().any()).row(0, named=True)
    assert not any(bad.values()), [name for name, flag in bad.items() if flag]
    # The simulated hosts have packets, processes, memory and cores on every row.
    assert out.select("net_rx_bytes_per_packet", "cpu_busy_per_process", "mem_pressure_index",
                      "processes_per_core").null_count().row(0) == (0, 0, 0, 0)  # fmt: skip


def test_declarations():
    defs = cross_defs(PipelineConfig())
    canonical = {f.name for f in canonical_features()}
    names = [d.feature.name for d in defs]
    assert len(names) == len(set(names))
    assert not set(names) & (canonical | {d.feature.name for d in temporal_defs(PipelineConfig())})
    for d in defs:
        f = d.feature
        assert f.stage == CROSS and f.window is None and f.streamable and f.pack is None, f.name
        assert f.unit and f.description.endswith("."), f.name
        assert set(f.inputs) <= canonical, f.name
        assert set(d.expr.meta.root_names()) == set(f.inputs), f.name


def test_the_live_path_computes_the_frame_values_on_arrays():
    rows = [ROW, dict.fromkeys(ROW, 0.0), {**ROW, "net_rx_packets_per_s": 0.0, "net_tx_packets_per_s": 0.0},
            {**ROW, "process_count": None, "cpu_count": float("nan")}, {**ROW, "mem_total_bytes": -0.0}]  # fmt: skip
    frame = pl.DataFrame(rows, schema=dict.fromkeys(ROW, pl.Float64))
    want = compute(rows)
    got = cross_arrays(lambda name: frame[name].fill_null(np.nan).to_numpy())
    for d, values in zip(cross_defs(PipelineConfig()), got):
        expected = np.array([np.nan if v is None else v for v in want[d.feature.name]])
        np.testing.assert_array_equal(values, expected, err_msg=d.feature.name)  # exactly, NaN where null
