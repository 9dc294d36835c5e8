"""The security pack on a simulated fleet: each indicator stands out in its incident, and looks only back."""

from __future__ import annotations

import itertools

import polars as pl
import pytest

from amoskys.config import SimulatorConfig
from amoskys.pipeline import canonical, packs, source
from amoskys.pipeline.features import seconds
from amoskys.pipeline.packs import _common

# seed 3 puts every incident kind this pack watches on some host of four.
SIMULATION = SimulatorConfig(hosts=4, duration_seconds=7200, seed=3)

# incident -> (feature, how many times the host's benign median the incident's median must reach at least)
INDICATORS = {
    "port_scan": [("scan_fail_rate_60s", 20.0), ("scan_rst_rate_60s", 20.0), ("scan_fail_share_60s", 3.0)],
    "data_exfiltration": [("exfil_tx_surge", 5.0), ("exfil_tx_share_60s", 1.3)],
    "crypto_miner": [("mining_indicator_300s", 2.5)],
    "memory_leak": [("mem_leak_slope_300s", 10.0)],
    "fork_storm": [("fork_surge", 10.0), ("procs_running_per_core", 3.0), ("proc_new_per_min_60s", 10.0)],
}


@pytest.fixture(scope="module")
def fleet() -> tuple[pl.DataFrame, pl.DataFrame, list]:
    raw = source.simulated(SIMULATION)
    frame = canonical.build_canonical(raw, SIMULATION.interval_seconds, 60.0)[0]
    loaded = packs.load(("security",), {})
    return frame, packs.compute_all(frame, raw.flows, loaded), loaded


def test_adds_exactly_the_declared_finite_columns(fleet):
    frame, out, loaded = fleet
    names = [f.name for f in packs.declared(loaded)]
    assert out.columns == frame.columns + names
    assert out.select(pl.col(names).is_infinite().any()).row(0) == (False,) * len(names)
    # Only a host's very first row lacks the history a baseline or a difference needs.
    assert out.select(pl.col(names).null_count()).row(0) <= (out["host"].n_unique(),) * len(names)


@pytest.mark.parametrize("incident", sorted(INDICATORS))
def test_indicator_stands_out_in_its_incident(fleet, incident):
    _, out, _ = fleet
    hosts = out.filter(pl.col("incident") == incident)["host"].unique().to_list()
    assert hosts, f"the simulation has no {incident}"
    for host in hosts:
        rows = out.filter(pl.col("host") == host)
        inside, benign = rows.filter(pl.col("incident") == incident), rows.filter(pl.col("label") == 0)
        for feature, factor in INDICATORS[incident]:
            during, normal = inside[feature].median(), benign[feature].median()
            assert during > factor * abs(normal), f"{host} {incident}: {feature} {during} vs benign {normal}"


def test_a_future_change_never_moves_an_earlier_value(fleet):
    frame, out, loaded = fleet
    cut = frame["ts"].min() + (frame["ts"].max() - frame["ts"].min()) / 2
    later = pl.col("ts") >= cut
    values = [c for c in frame.columns if frame[c].dtype == pl.Float64]
    # Scale every later value, then add a scan on top.
    changed = frame.with_columns(pl.when(later).then(pl.col(values) * 3.0 + 1.0).otherwise(pl.col(values)))
    changed = changed.with_columns(
        pl.when(later).then(pl.col("tcp_attempt_fails_per_s") + 500.0).otherwise("tcp_attempt_fails_per_s")
    )
    again = packs.compute_all(changed, pl.DataFrame(), loaded)
    names = [f.name for f in packs.declared(loaded)]
    before = out.filter(~later).select(names)
    assert again.filter(~later).select(names).equals(before)
    assert not again.filter(later).select(names).equals(out.filter(later).select(names))


def test_a_quiet_host_reads_steady_not_missing(fleet):
    frame, _, loaded = fleet
    quiet = frame.with_columns(pl.lit(0.0).alias(c) for c in ("tcp_attempt_fails_per_s", "tcp_active_opens_per_s",
                                                                "tcp_out_rsts_per_s"))  # fmt: skip
    out = packs.compute_all(quiet, pl.DataFrame(), loaded)
    assert out["scan_fail_share_60s"].unique().to_list() == [0.0]
    assert out["scan_fail_burstiness_60s"].unique().to_list() == [1.0]
    assert out["scan_rst_burstiness_60s"].unique().to_list() == [1.0]


def test_each_host_reads_as_if_alone(fleet):
    # The windows of all hosts run in one pass: none may reach into the previous host's rows.
    frame, out, loaded = fleet
    for host in frame["host"].unique().to_list():
        alone = packs.compute_all(frame.filter(pl.col("host") == host), pl.DataFrame(), loaded)
        assert alone.equals(out.filter(pl.col("host") == host)), host


@pytest.mark.parametrize("window_s", [60.0, 300.0, 3600.0])
def test_median_before_is_the_median_over_time_on_any_spacing(window_s):
    # Regular stretches, gaps longer than the window, odd steps and hosts of one row.
    steps_ms = [5000] * 700 + [7300, 5000, 4_000_000] + [5000] * 800 + [1000, 10000] * 50 + [500] * 300
    ts = list(itertools.accumulate(steps_ms))
    hosts = ["a"] * 1000 + ["b"] + ["c"] * (len(ts) - 1001)
    frame = pl.DataFrame({"host": hosts, "ts": ts, "x": [float(i * 7919 % 101) for i in range(len(ts))]})
    keyed = _common.with_host_time(frame.with_columns(pl.from_epoch("ts", time_unit="ms").dt.cast_time_unit("ns")), _common.HOST_GAP_S)
    expected = keyed.select(pl.col("x").rolling_median_by("ts", seconds(window_s), closed="left").over("host"))
    assert _common.median_before(keyed, "x", window_s).equals(expected.to_series())
