"""The security pack on a simulated fleet: each indicator stands out in its incident, and looks only back;
and on irregular frames: every value is its definition, and a live detector's run over a buffer of the
last hour gives the values of a run over the whole history."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from amoskys.config import SimulatorConfig
from amoskys.pipeline import canonical, packs, source
from amoskys.pipeline.jit import segments
from amoskys.pipeline.packs import _security_kernel as kernel

PACK_FEATURES = [f.name for f in packs.available()["security"].features({})]

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


def _irregular(seed: int) -> pl.DataFrame:
    """Two hosts and a host of one row, with regular stretches, gaps longer than every window, odd and
    uneven steps, all-zero stretches and byte counts of 1e9 and more, sorted by host, then ts."""
    rng = np.random.default_rng(seed)
    steps_ms = [5000] * 800 + [7300, 5000, 4_000_000] + [5000] * 300 + [1000, 10000] * 50 + [500] * 300 + [300_500]
    steps_ms += [5000] * 200
    ts_ms = list(itertools.accumulate(steps_ms))
    n = len(ts_ms)
    hosts = ["a"] * 1000 + ["b"] + ["c"] * (n - 1001)
    idle = (np.arange(n) // 100) % 4 == 1  # every fourth stretch of 100 rows: no TCP or fork activity

    def rate(scale: float) -> np.ndarray:
        return np.where(idle, 0.0, rng.exponential(scale, n)).round(1)

    columns = {
        "tcp_attempt_fails_per_s": rate(3.0), "tcp_out_rsts_per_s": rate(2.0), "tcp_active_opens_per_s": rate(5.0),
        "process_forks_per_s": rate(2.0), "process_count": 300.0 + rng.integers(-5, 6, n).cumsum(),
        "net_tx_bytes_per_s": 1e9 + rng.normal(0.0, 1e4, n), "net_rx_bytes_per_s": rng.exponential(1e5, n),
        "disk_read_bytes_per_s": rng.exponential(1e6, n), "disk_write_bytes_per_s": np.full(n, 5e5),
        "cpu_user_pct": rng.uniform(0.0, 100.0, n), "mem_used_bytes": 3e10 + np.arange(n) * 1e5 + rng.normal(0, 1e6, n),
        "mem_total_bytes": np.full(n, 6.4e10), "procs_running_count": rng.integers(0, 9, n).astype(float),
        "cpu_count": np.full(n, 8.0),
    }  # fmt: skip
    ts = pl.from_epoch(pl.Series(ts_ms), time_unit="ms").dt.cast_time_unit("ns").dt.replace_time_zone("UTC")
    return pl.DataFrame({"host": hosts, "ts": ts, **columns})


def _by_definition(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every feature, row by row, straight from its description (NaN for null)."""
    ns = frame["ts"].dt.epoch("ns").to_numpy()
    ts, s = ns / 1e9, 10**9
    c = {name: frame[name].to_numpy() for name in frame.columns[2:]}
    first = (frame["host"] != frame["host"].shift(1)).fill_null(True).to_numpy()
    growth = np.diff(c["process_count"], prepend=np.nan) / np.diff(ts, prepend=np.nan)
    exited = np.where(first, np.nan, np.maximum(c["process_forks_per_s"] - growth, 0.0))
    disk = c["disk_read_bytes_per_s"] + c["disk_write_bytes_per_s"]
    net = c["net_rx_bytes_per_s"] + c["net_tx_bytes_per_s"]
    share = c["mem_used_bytes"] / c["mem_total_bytes"]
    host = frame["host"].to_numpy()
    out = {name: np.full(len(ts), np.nan) for name in PACK_FEATURES}

    def ratio(a, b, idle=np.nan):
        return idle if a == 0 and b == 0 else (a / b if b != 0 else np.nan)

    def median(x):
        return np.median(x[~np.isnan(x)]) if (~np.isnan(x)).any() else np.nan

    def clip01(v):
        return v if v != v else min(max(v, 0.0), 1.0)

    def cv(x):
        return 0.0 if len(x) < 2 or x.mean() == 0 else clip01(x.std(ddof=1) / x.mean())

    for i in range(len(ts)):
        same = host == host[i]
        short, long = same & (ns > ns[i] - 60 * s) & (ns <= ns[i]), same & (ns > ns[i] - 300 * s) & (ns <= ns[i])
        hour = same & (ns >= ns[i] - 3600 * s) & (ns < ns[i])
        fails, rsts, forks, tx = (c[k][short] for k in ("tcp_attempt_fails_per_s", "tcp_out_rsts_per_s",
                                                         "process_forks_per_s", "net_tx_bytes_per_s"))  # fmt: skip
        gone, gone_300 = exited[short][~first[short]], exited[long][~first[long]]
        tx_base, fork_base = median(c["net_tx_bytes_per_s"][hour]), median(c["process_forks_per_s"][hour])
        u, v = ts[long] - ts[long].mean(), share[long] - share[long].mean()
        values = {
            "scan_fail_rate_60s": fails.mean(), "scan_rst_rate_60s": rsts.mean(),
            "scan_fail_share_60s": ratio(fails.sum(), c["tcp_active_opens_per_s"][short].sum(), 0.0),
            "scan_fail_burstiness_60s": ratio(fails.max(), fails.mean(), 1.0),
            "scan_rst_burstiness_60s": ratio(rsts.max(), rsts.mean(), 1.0),
            "proc_new_per_min_60s": forks.mean() * 60,
            "proc_exited_per_min_60s": gone.mean() * 60 if len(gone) else np.nan,
            "proc_short_lived_share_300s": clip01(ratio(gone_300.mean(), c["process_forks_per_s"][long].mean()))
            if len(gone_300) else np.nan,
            "exfil_tx_surge": tx.mean() / (tx_base if tx_base >= 1024 or tx_base != tx_base else 1024.0),
            "exfil_tx_share_60s": ratio(tx.sum(), net[short].sum()),
            "mining_indicator_300s": clip01(c["cpu_user_pct"][long].mean() / 100)
            * (1 - (cv(disk[long]) + cv(net[long])) / 2),
            "mem_leak_slope_300s": (u * v).sum() / (u * u).sum() * 3600 if (u * u).mean() >= 1 else np.nan,
            "fork_surge": forks.mean() / (fork_base if fork_base >= 1 or fork_base != fork_base else 1.0),
            "procs_running_per_core": c["procs_running_count"][i] / c["cpu_count"][i],
        }  # fmt: skip
        for name, value in values.items():
            out[name][i] = value
    return out


@pytest.mark.parametrize("missing", [0.0, 0.002])
def test_every_feature_is_its_definition_on_any_spacing(missing):
    frame = _irregular(seed=1)
    # missing values (NaN as well as null) in the inputs: a window holding one is null, the baselines leave it out
    rng = np.random.default_rng(0)
    holes = {"net_tx_bytes_per_s": None, "process_forks_per_s": np.nan, "process_count": None,
             "disk_read_bytes_per_s": None}  # fmt: skip
    frame = frame.with_columns(pl.when(pl.Series(rng.random(frame.height) < missing)).then(hole).otherwise(name)
                               .alias(name) for name, hole in holes.items())  # fmt: skip
    out = packs.compute_all(frame, pl.DataFrame(), packs.load(("security",), {}))
    expected = _by_definition(frame)
    for name in PACK_FEATURES:
        got = out[name].to_numpy()
        assert out[name].null_count() == np.isnan(expected[name]).sum() and not out[name].is_nan().any(), name
        # a slope that should be 0 is 0 up to the rounding of its terms
        atol = 1e-12 * np.nanmax(np.abs(expected[name])) if name == "mem_leak_slope_300s" else 0.0
        np.testing.assert_allclose(got, expected[name], rtol=1e-9, atol=atol, err_msg=name)


def test_emit_from_gives_a_full_run_s_values_from_the_rows_of_the_last_hour():
    frame = _irregular(seed=2)
    ts = frame["ts"].dt.epoch("ns").to_numpy()
    columns = tuple(frame[name].to_numpy() for name in kernel.INPUTS)
    starts = segments(frame["host"])
    full = kernel.security_arrays(ts, columns, starts)
    # emit from a full hour's row, rows in the middle of a block, after a gap, on odd steps, on a host's first
    for emit in (1, 760, 801, 803, 903, 1001, 1005, 1150, 1350, 1503, 1504, 1600):
        host = np.searchsorted(starts, emit, side="right") - 1
        lo, hi = starts[host], starts[host + 1]
        # the host's rows of the hour before the first row to emit and the one row before them, then the new rows
        first = max(lo + int(np.searchsorted(ts[lo:emit], ts[emit] - 3600 * 10**9)) - 1, lo)
        part = kernel.security_arrays(ts[first:hi], tuple(c[first:hi] for c in columns), np.array([0, hi - first]),
                                      emit_from=np.array([emit - first]))  # fmt: skip
        np.testing.assert_array_equal(part, full[:, emit:hi])  # the rows from emit on only


def test_a_missing_input_is_null_in_the_windows_that_hold_it():
    frame = _irregular(seed=3).filter(pl.col("host") == "a")
    loaded = packs.load(("security",), {})
    gap = frame.with_columns(pl.when(pl.int_range(pl.len()) == 500).then(None).otherwise(pl.col("net_tx_bytes_per_s"))
                             .alias("net_tx_bytes_per_s"))  # fmt: skip
    out, before = packs.compute_all(gap, pl.DataFrame(), loaded), packs.compute_all(frame, pl.DataFrame(), loaded)
    made_null = {name: sorted(set(out[name].is_null().arg_true()) - set(before[name].is_null().arg_true()))
                 for name in ("exfil_tx_share_60s", "exfil_tx_surge", "mining_indicator_300s")}  # fmt: skip
    # the windows holding row 500 on a 5 s grid: 12 of 60 s, 60 of 300 s; the baseline leaves it out
    assert made_null == {"exfil_tx_share_60s": list(range(500, 512)), "exfil_tx_surge": list(range(500, 512)),
                         "mining_indicator_300s": list(range(500, 560))}  # fmt: skip
    unaffected = [n for n in PACK_FEATURES if n not in made_null]
    assert out.select(unaffected).equals(before.select(unaffected))


def test_baselines_are_polars_medians_over_the_hour_before_bit_for_bit():
    frame = _irregular(seed=4)
    expected = frame.select(pl.col("process_forks_per_s", "net_tx_bytes_per_s")
                            .rolling_median_by("ts", "3600s", closed="left").over("host"))  # fmt: skip
    ts, starts = frame["ts"].dt.epoch("ns").to_numpy(), segments(frame["host"])
    for column in expected.columns:  # forks: many ties
        values = frame[column].to_numpy()
        got = np.concatenate([kernel._median_before(ts, values, lo, lo, hi) for lo, hi in itertools.pairwise(starts)])
        np.testing.assert_array_equal(got, expected[column].to_numpy())
