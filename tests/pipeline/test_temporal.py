"""Stage 2 on small frames whose every value is known, against a direct computation, and run as a
live detector runs it (new rows after a buffer of history)."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.features import TEMPORAL
from amoskys.pipeline.jit import segments
from amoskys.pipeline.temporal import KEY_METRICS, temporal_defs, temporal_features
from amoskys.pipeline.temporal_kernel import NO_EWM_STATE, temporal_arrays

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
STATS = ("mean", "std", "min", "max", "roc", "slope", "volatility")


def frame(samples: list[tuple[str, float, float]]) -> pl.DataFrame:
    """(host, second, value) samples as a stage-1 frame; every key metric gets the value."""
    hosts, offsets, values = zip(*samples)
    return pl.DataFrame({
        "host": hosts,
        "ts": pl.Series([T0 + timedelta(seconds=s) for s in offsets]).dt.cast_time_unit("ns"),
        **{m: [float(v) for v in values] for m in KEY_METRICS},
    })  # fmt: skip


def run(data: pl.DataFrame, windows=(10.0,), half_lives=(5.0,), metric="cpu_busy_pct") -> pl.DataFrame:
    """The features of one metric, with the metric prefix dropped from the column names."""
    config = PipelineConfig(windows_seconds=windows, ewm_half_lives_seconds=half_lives)
    defs = [d for d in temporal_defs(config) if d.feature.inputs == (metric,)]
    out = temporal_features(data, config)
    return out.select("host", "ts", *(pl.col(d.feature.name).alias(d.feature.name.removeprefix(metric + "_"))
                                      for d in defs))  # fmt: skip


def values(out: pl.DataFrame, host: str, column: str) -> list:
    return out.filter(pl.col("host") == host)[column].to_list()


def test_golden_two_hosts():
    a = [("a", s, v) for s, v in zip((0, 5, 10, 15, 20), (1, 2, 4, 8, 16))]
    data = frame(a + [("b", s, 7) for s in (0, 5, 10)])
    out = run(data)
    # Window (t - 10 s, t]: this sample and the one 5 s before it.
    assert values(out, "a", "mean_10s") == [1.0, 1.5, 3.0, 6.0, 12.0]
    assert values(out, "a", "std_10s") == [0.0, 0.5, 1.0, 2.0, 4.0]  # population std; one sample -> 0
    assert values(out, "a", "min_10s") == [1.0, 1.0, 2.0, 4.0, 8.0]
    assert values(out, "a", "max_10s") == [1.0, 2.0, 4.0, 8.0, 16.0]
    # Two samples: the slope is their difference over 5 s; one sample: 0.
    assert values(out, "a", "slope_10s") == pytest.approx([0.0, 0.2, 0.4, 0.8, 1.6])
    # (x(t) - x(oldest sample in [t - 10 s, t])) / 10 s: 15 s -> (8 - 2) / 10.
    assert values(out, "a", "roc_10s") == pytest.approx([0.0, 0.1, 0.3, 0.6, 1.2])
    assert values(out, "a", "volatility_10s") == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3, 1 / 3])
    # Weights halve every 5 s, one sample every 5 s: y = (y_prev + x) / 2.
    assert values(out, "a", "ewm_5s") == pytest.approx([1.0, 1.5, 2.75, 5.375, 10.6875])
    for stat, expected in {"mean_10s": 7.0, "std_10s": 0.0, "min_10s": 7.0, "max_10s": 7.0, "roc_10s": 0.0,
                           "slope_10s": 0.0, "volatility_10s": 0.0, "ewm_5s": 7.0}.items():  # fmt: skip
        assert values(out, "b", stat) == [expected] * 3, stat


def test_slope_is_the_least_squares_fit():
    data = frame([("a", s, v) for s, v in zip((0, 5, 10, 15), (1, 2, 4, 3))])
    out = run(data, windows=(20.0,))
    fitted = [np.polyfit([0, 5, 10, 15][: i + 1], [1, 2, 4, 3][: i + 1], 1)[0] for i in (1, 2, 3)]
    assert values(out, "a", "slope_20s")[1:] == pytest.approx(fitted)
    assert values(out, "a", "slope_20s")[2] == pytest.approx(0.3)  # by hand: 15 / 50


def test_windows_count_time_not_rows():
    # Six samples, a 10-minute gap (stage 1 drops such gaps), then three more.
    before = [("a", 5 * i, 10 + i) for i in range(6)]
    after = [("a", 600 + 5 * i, 100 + i) for i in range(3)]
    out = run(frame(before + after), windows=(30.0,), half_lives=(30.0,))
    first_after = out.filter(pl.col("ts") == T0 + timedelta(seconds=600)).row(0, named=True)
    # The 30 s window after the gap holds only that sample; 6 rows (30 s of grid) would reach 5-25 s.
    assert first_after["mean_30s"] == 100.0 and first_after["min_30s"] == 100.0
    assert (first_after["std_30s"], first_after["slope_30s"], first_after["roc_30s"]) == (0.0, 0.0, 0.0)
    row_based = frame(before + after)["cpu_busy_pct"].rolling_mean(6).to_list()[6]
    assert row_based != pytest.approx(100.0)
    # The EWM decays by time: 575 s since the last sample at a 30 s half-life, not one step.
    last_before = values(out, "a", "ewm_30s")[5]
    assert first_after["ewm_30s"] == pytest.approx(100.0 - (100.0 - last_before) * 0.5 ** (575 / 30))
    assert values(out, "a", "mean_30s")[6:] == [100.0, 100.5, 101.0]


def test_window_reaching_over_a_short_gap_keeps_what_is_inside():
    # Samples at 0-25 s, then 60 and 65 s; the 60 s window at 65 s holds 10-25, 60, 65.
    data = frame([("a", 5 * i, i) for i in range(6)] + [("a", 60, 20), ("a", 65, 30)])
    out = run(data, windows=(60.0,))
    assert values(out, "a", "mean_60s")[-1] == pytest.approx(np.mean([2, 3, 4, 5, 20, 30]))
    assert values(out, "a", "min_60s")[-1] == 2.0
    # roc at 60 s: the oldest sample in [0 s, 60 s] is the one at 0 s.
    assert values(out, "a", "roc_60s")[-2] == pytest.approx((20 - 0) / 60)


def test_hosts_never_mix():
    low = [("a", 5 * i, 1.0 + i % 2) for i in range(20)]
    high = [("b", 5 * i, 1000.0) for i in range(20)]
    out = run(frame(low + high), windows=(30.0, 300.0), half_lives=(60.0,))
    b = out.filter(pl.col("host") == "b")
    for column in ("mean_30s", "min_30s", "max_30s", "mean_300s", "min_300s", "ewm_60s"):
        assert b[column].to_list() == [1000.0] * 20, column
    for column in ("std_300s", "slope_300s", "roc_300s", "volatility_300s"):
        assert b[column].to_list() == [0.0] * 20, column
    # The same features on host a alone do not change when host b is beside it.
    alone = run(frame(low), windows=(30.0, 300.0), half_lives=(60.0,))
    assert out.filter(pl.col("host") == "a").equals(alone)


def reference(host_frame: pl.DataFrame, metric: str, window_s: float, half_life_s: float) -> dict[str, np.ndarray]:
    """Every feature of one host, computed row by row with numpy."""
    t = np.array([(ts - T0).total_seconds() for ts in host_frame["ts"]])
    x = host_frame[metric].to_numpy()
    out = {stat: np.empty(len(x)) for stat in (*STATS, "ewm")}
    for i in range(len(x)):
        inside = (t > t[i] - window_s) & (t <= t[i])
        tw, xw = t[inside], x[inside]
        out["mean"][i], out["std"][i], out["min"][i], out["max"][i] = xw.mean(), xw.std(), xw.min(), xw.max()
        out["slope"][i] = np.polyfit(tw - tw.mean(), xw, 1)[0] if len(xw) > 1 else 0.0
        oldest = np.argmax(t >= t[i] - window_s)
        out["roc"][i] = (x[i] - x[oldest]) / window_s
        out["volatility"][i] = xw.std() / abs(xw.mean()) if xw.mean() != 0 else np.nan
        decay = 0.5 ** ((t[i] - t[i - 1]) / half_life_s) if i else 0.0
        out["ewm"][i] = decay * out["ewm"][i - 1] + (1 - decay) * x[i] if i else x[i]
    return out


@pytest.mark.parametrize("metric", KEY_METRICS)
def test_matches_a_direct_computation_on_a_simulated_fleet(simulated_split, metric):
    # Drop 3 minutes of the first host, as stage 1 drops a long gap.
    first_host, start = simulated_split.canonical.row(0)[:2]
    gap = (pl.col("host") == first_host) & pl.col("ts").is_between(start + timedelta(minutes=10),
                                                                   start + timedelta(minutes=13))  # fmt: skip
    data = simulated_split.canonical.filter(~gap)
    window_s, half_life_s = 60.0, 15.0
    out = run(data, windows=(window_s,), half_lives=(half_life_s,), metric=metric)
    for host in data["host"].unique(maintain_order=True):
        expected = reference(data.filter(pl.col("host") == host), metric, window_s, half_life_s)
        got = out.filter(pl.col("host") == host)
        for stat, want in expected.items():
            column = f"{stat}_{int(half_life_s if stat == 'ewm' else window_s)}s"
            np.testing.assert_allclose(got[column].fill_null(np.nan).to_numpy(), want, rtol=1e-7,
                                       atol=1e-9 * max(1.0, np.abs(want[np.isfinite(want)]).max()), err_msg=column)


def test_slope_and_roc_of_a_long_linear_trend_are_exact():
    # A week of a gauge in the billions growing 1000 bytes/s: large u·x products.
    seconds = np.arange(0, 7 * 86400, 5)
    ts = pl.Series(int(T0.timestamp()) * 10**9 + seconds * 10**9).cast(pl.Datetime("ns", "UTC"))
    data = pl.DataFrame({"host": "a", "ts": ts, "mem_used_bytes": 8e9 + 1000.0 * seconds})
    out = temporal_features(data.with_columns(pl.lit(0.0).alias(m) for m in KEY_METRICS if m != "mem_used_bytes"),
                            PipelineConfig())
    for w in ("30s", "60s", "300s"):
        np.testing.assert_allclose(out[f"mem_used_bytes_slope_{w}"][1:].to_numpy(), 1000.0, rtol=1e-6)
        np.testing.assert_allclose(out[f"mem_used_bytes_roc_{w}"][int(w[:-1]) // 5 :].to_numpy(), 1000.0, rtol=1e-9)


def test_nothing_is_infinite_or_nan(simulated_split):
    zeros = frame([(h, 5 * i, 0.0) for h in ("a", "b") for i in range(30)])
    for data in (simulated_split.canonical, zeros):
        defs = temporal_defs(PipelineConfig())
        out = temporal_features(data, PipelineConfig()).select(d.feature.name for d in defs)
        bad = out.select(pl.all().is_infinite().any() | pl.all().is_nan().any()).row(0, named=True)
        assert not any(bad.values()), [name for name, flag in bad.items() if flag]
    out = temporal_features(zeros, PipelineConfig())
    assert out["cpu_busy_pct_volatility_60s"].null_count() == out.height  # the mean is 0
    assert out["cpu_busy_pct_std_60s"].to_list() == [0.0] * out.height


def test_declarations():
    config = PipelineConfig()
    defs = temporal_defs(config)
    features = [d.feature for d in defs]
    names = [f.name for f in features]
    assert len(names) == len(set(names))
    assert not set(names) & {f.name for f in canonical_features()}
    per_metric = len(config.windows_seconds) * len(STATS) + len(config.ewm_half_lives_seconds)
    assert len(defs) == len(KEY_METRICS) * per_metric >= 100
    canonical_names = {f.name for f in canonical_features()}
    for d in defs:
        f = d.feature
        assert f.stage == TEMPORAL and f.streamable and f.pack is None, f.name
        assert f.unit and f.description.endswith("."), f.name
        assert len(f.inputs) == 1 and f.inputs[0] in canonical_names, f.name
        assert f.window is not None and f.name == f"{f.inputs[0]}_{d.stat}_{f.window}", f.name
    units = {f.name: f.unit for f in features}
    assert units["cpu_busy_pct_slope_60s"] == "percent/s"
    assert units["net_tx_bytes_per_s_roc_30s"] == "bytes/s²"
    assert units["mem_used_bytes_volatility_300s"] == "ratio"
    assert units["process_count_ewm_60s"] == "count"


def test_a_constant_window_is_exact_after_a_jump():
    # A large gauge jumps, then holds: once the window holds only the new level, exactly no variation.
    data = frame([("a", 5 * i, 8e9 + 0.1 if i < 10 else 1.7e10 + 0.3) for i in range(30)])
    out = run(data, windows=(30.0,), metric="mem_used_bytes")
    held = out.filter(pl.col("ts") >= T0 + timedelta(seconds=5 * 15))  # 6 samples of the new level
    assert set(held["std_30s"]) == {0.0} and set(held["slope_30s"]) == {0.0}
    assert set(held["mean_30s"]) == {1.7e10 + 0.3}
    assert set(held["volatility_30s"]) == {0.0}


def test_null_key_metrics_are_refused():
    data = frame([("a", 0, 1.0), ("a", 5, 2.0)]).with_columns(pl.lit(None, pl.Float64).alias("disk_busy_pct"))
    with pytest.raises(ValueError, match="disk_busy_pct"):
        temporal_features(data, PipelineConfig())


def as_arrays(data: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times in ns, metrics × rows, host segments) of a frame sorted by host and time."""
    return data["ts"].dt.epoch("ns").to_numpy(), data.select(KEY_METRICS).to_numpy().T, segments(data["host"])


@pytest.mark.parametrize("new_from", [1, 40, 100, 121, 400])
def test_new_rows_after_a_buffer_of_history_match_the_batch(simulated_split, new_from):
    """A live detector's call: per host, the rows of the last max(w) seconds before its new rows
    (both ends included), the new rows, and the EWMs of the last row before them. Rows 120 to 155
    of the first host are dropped (a gap): new_from 121 starts right after it."""
    config = PipelineConfig()
    first_host = simulated_split.canonical["host"][0]
    index = pl.int_range(pl.len()).over("host")
    data = simulated_split.canonical.filter((pl.col("host") != first_host) | ~index.is_between(120, 155))
    ts, x, starts = as_arrays(data)
    windows, half_lives = config.windows_seconds, config.ewm_half_lives_seconds
    batch = np.concatenate(temporal_arrays(ts, x, starts, windows, half_lives))

    emit = starts[:-1] + new_from  # the first new row of each host
    first = [np.searchsorted(ts[lo:hi], ts[e] - max(windows) * 1e9) + lo for lo, hi, e in zip(starts, starts[1:], emit)]
    keep = np.concatenate([np.arange(f, hi) for f, hi in zip(first, starts[1:])])
    buffered_starts = np.append(0, np.cumsum(starts[1:] - first))
    ewm_rows = [i for i, d in enumerate(temporal_defs(config)) if d.stat == "ewm"]
    last_ewms = batch[ewm_rows][:, emit - 1].T.reshape(len(emit), len(KEY_METRICS), len(half_lives))
    stream = np.concatenate(temporal_arrays(ts[keep], x[:, keep], buffered_starts, windows, half_lives,
                                      emit_from=buffered_starts[:-1] + (emit - first), ewm_from=last_ewms,
                                      ewm_from_ns=ts[emit - 1]))  # fmt: skip

    new = np.concatenate([np.arange(e, hi) for e, hi in zip(emit, starts[1:])])
    # the new rows only, host after host, bit for bit (NaN where the volatility is undefined in both)
    np.testing.assert_array_equal(stream, batch[:, new])


def test_ewms_resume_from_a_given_value():
    ts = np.array([0, 5, 10, 15], dtype=np.int64) * 10**9
    x = np.array([[1.0, 2.0, 4.0, 8.0]])
    whole = temporal_arrays(ts, x, np.array([0, 4]), (), (5.0,))
    # from the EWM at 5 s (1.5), rows 10 s and 15 s only
    resumed = temporal_arrays(ts[2:], x[:, 2:], np.array([0, 2]), (), (5.0,), ewm_from=np.array([[[1.5]]]),
                              ewm_from_ns=np.array([5 * 10**9]))  # fmt: skip
    assert whole[0][0].tolist() == [1.0, 1.5, 2.75, 5.375]
    assert resumed[0][0].tolist() == [2.75, 5.375]
    # a host without a value starts afresh from its first row
    fresh = temporal_arrays(ts[2:], x[:, 2:], np.array([0, 2]), (), (5.0,), ewm_from=np.zeros((1, 1, 1)),
                            ewm_from_ns=np.array([NO_EWM_STATE]))  # fmt: skip
    assert fresh[0][0].tolist() == [4.0, 6.0]
