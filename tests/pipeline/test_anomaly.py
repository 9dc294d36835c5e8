"""Stage 5 on series whose answer is known: robust z, entropy, autocorrelation, correlation, outlier scores."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from amoskys.config import SimulatorConfig
from amoskys.errors import InputError, ModelError
from amoskys.pipeline.anomaly import KEY_METRICS, MIN_SAMPLES, AnomalyStage
from amoskys.pipeline.canonical import build_canonical
from amoskys.pipeline.features import ANOMALY
from amoskys.pipeline.outlier_scores import _BLOCK, Forest, Lof, median_mad_scale
from amoskys.pipeline.source import simulated
from amoskys.pipeline.split import split_by_time
from amoskys.pipeline.windowed import PEARSON_STATE, pearson, permutation_entropy

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
CPU = "cpu_busy_pct"


def host_frame(host: str, n: int, start_s: float = 0.0, step_s: float = 5.0, seed: int = 0, **series) -> pl.DataFrame:
    """n rows of one host every step_s; key metrics are noise around 100 unless given."""
    rng = np.random.default_rng(seed)
    values = {m: 100.0 + rng.standard_normal(n) for m in KEY_METRICS}
    values |= {m: np.asarray(v, dtype=np.float64) for m, v in series.items()}
    ts = [T0 + timedelta(seconds=start_s + step_s * i) for i in range(n)]
    frame = pl.DataFrame({"host": [host] * n, "ts": ts, "label": [0] * n, "incident": [None] * n, **values})
    return frame.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")), pl.col("label").cast(pl.Int8),
                              pl.col("incident").cast(pl.String))  # fmt: skip


def fleet(*frames: pl.DataFrame) -> pl.DataFrame:
    return pl.concat(frames).sort("host", "ts")


def fit_transform(frame: pl.DataFrame, **settings) -> tuple[AnomalyStage, pl.DataFrame]:
    stage = AnomalyStage(**settings).fit(frame)
    return stage, stage.transform(frame)


def after_warm_up(column: pl.Series) -> np.ndarray:
    return column.drop_nulls().to_numpy()


def test_robust_z_of_a_known_series():
    frame = host_frame("a", 5, **{CPU: [1, 2, 3, 4, 100], "tcp_attempt_fails_per_s": [0, 0, 0, 0, 5],
                                  "process_count": [7] * 5})  # fmt: skip
    stage, out = fit_transform(frame)
    # cpu: median 3, MAD 1.
    assert out[f"{CPU}_robust_z"].to_list() == pytest.approx([(x - 3) / 1.4826 for x in (1, 2, 3, 4, 100)])
    # MAD 0: the mean absolute deviation (1) stands in.
    assert out["tcp_attempt_fails_per_s_robust_z"].to_list() == pytest.approx([0, 0, 0, 0, 5 / 1.2533])
    # Constant in training: the floor, 1% of |median|: large but finite.
    stats = stage.fitted_statistics()["baselines"]["a"]
    assert stats["process_count"] == {"median": 7.0, "mad": 0.0, "scale": pytest.approx(0.07)}
    later = stage.transform(host_frame("a", 5, start_s=25, process_count=[8] * 5))["process_count_robust_z"]
    assert later.to_list() == pytest.approx([1 / 0.07] * 5)


def test_a_host_unseen_in_training_uses_the_fleet_baseline():
    train = fleet(host_frame("a", 200, seed=1, **{CPU: np.full(200, 10.0) + np.arange(200) % 7}),
                  host_frame("b", 200, seed=2, **{CPU: np.full(200, 50.0) + np.arange(200) % 5}))  # fmt: skip
    stage = AnomalyStage().fit(train)
    stats = stage.fitted_statistics()
    assert set(stats["baselines"]) == {"a", "b"}
    pooled = train[CPU].to_numpy()
    median = float(np.median(pooled))
    assert stats["fleet_baseline"][CPU]["median"] == median
    assert stats["fleet_baseline"][CPU]["mad"] == float(np.median(np.abs(pooled - median)))

    new = fleet(host_frame("a", 3, start_s=1000, **{CPU: [30.0] * 3}), host_frame("c", 3, **{CPU: [30.0] * 3}))
    z = dict(zip(*stage.transform(new).group_by("host").agg(pl.col(f"{CPU}_robust_z").first()).to_dict().values()))
    fleet_cpu, own_cpu = stats["fleet_baseline"][CPU], stats["baselines"]["a"][CPU]
    assert z["c"] == pytest.approx((30.0 - fleet_cpu["median"]) / fleet_cpu["scale"])
    assert z["a"] == pytest.approx((30.0 - own_cpu["median"]) / own_cpu["scale"])


def entropy(values, window_s: float = 300.0) -> pl.DataFrame:
    _, out = fit_transform(host_frame("a", len(values), **{CPU: values}), window_s=window_s)
    return out.select(pl.col(f"^{CPU}_perm_entropy_.*$"))


@pytest.mark.parametrize("values", [np.full(400, 5.0), np.arange(400.0), -np.arange(400.0) ** 2],
                         ids=["constant", "increasing", "decreasing"])  # fmt: skip
def test_entropy_of_a_constant_or_monotonic_series_is_0(values):
    for column in entropy(values):
        assert (after_warm_up(column) == 0.0).all(), column.name


def test_entropy_of_noise_is_high_at_every_scale():
    values = np.random.default_rng(3).random(2000)
    out = entropy(values)
    assert after_warm_up(out[f"{CPU}_perm_entropy_s1_300s"]).mean() > 0.9
    for column in out:
        assert after_warm_up(column).mean() > 0.75, column.name


def test_entropy_of_a_zigzag_has_two_patterns_and_coarse_graining_flattens_it():
    out = entropy(np.tile([0.0, 1.0], 200))
    full = out[f"{CPU}_perm_entropy_s1_300s"][100:]  # a full 300 s window: 60 patterns, half of each kind
    assert full.to_numpy() == pytest.approx(math.log(2) / math.log(6))
    assert (after_warm_up(out[f"{CPU}_perm_entropy_s2_300s"]) == 0.0).all()  # the 2-sample means are constant


def autocorr(values, window_s: float = 300.0) -> np.ndarray:
    _, out = fit_transform(host_frame("a", len(values), **{CPU: values}), window_s=window_s)
    return after_warm_up(out[f"{CPU}_autocorr_{int(window_s)}s"])


def test_lag1_autocorrelation_of_a_smooth_sine_is_near_1():
    assert autocorr(np.sin(2 * np.pi * np.arange(1000) / 100)).min() > 0.95


def test_lag1_autocorrelation_of_white_noise_is_near_0():
    r = autocorr(np.random.default_rng(4).standard_normal(3000), window_s=3600.0)
    assert abs(r[200:].mean()) < 0.05 and np.abs(r[200:]).max() < 0.25


def test_autocorrelation_of_a_constant_window_is_0_not_nan():
    assert (autocorr(np.full(100, 3.3)) == 0.0).all()


def cpu_net_corr(cpu, tx, rx) -> np.ndarray:
    _, out = fit_transform(host_frame("a", len(cpu), **{CPU: cpu, "net_tx_bytes_per_s": tx,
                                                          "net_rx_bytes_per_s": rx}))  # fmt: skip
    return after_warm_up(out["cpu_net_corr_300s"])


def test_cpu_network_correlation_of_identical_series_is_1():
    walk = np.cumsum(np.random.default_rng(5).standard_normal(500)) + 50
    assert cpu_net_corr(walk, walk * 1e4, np.full(500, 7.0)) == pytest.approx(1.0, abs=1e-9)
    assert cpu_net_corr(walk, walk * 300, walk * 700) == pytest.approx(1.0, abs=1e-9)  # tx + rx, both following
    assert cpu_net_corr(walk, -walk * 1e4 + 1e7, np.zeros(500)) == pytest.approx(-1.0, abs=1e-9)
    assert (cpu_net_corr(np.full(500, 20.0), walk, walk) == 0.0).all()


def test_lof_and_iforest_score_injected_outliers_above_normal_rows():
    hosts = ("a", "b", "c")
    train = fleet(*(host_frame(h, 600, seed=i) for i, h in enumerate(hosts)))
    stage = AnomalyStage().fit(train)
    later = fleet(*(host_frame(h, 200, start_s=3000, seed=10 + i) for i, h in enumerate(hosts)))
    outliers = pl.int_range(pl.len()) % 37 == 0
    later = later.with_columns(pl.when(outliers).then(pl.col(m) + 30.0).otherwise(pl.col(m))
                               for m in (CPU, "mem_used_bytes", "tcp_attempt_fails_per_s"))  # fmt: skip
    scored = stage.transform(later).with_columns(outlier=outliers)
    for score in ("lof_score", "iforest_score"):
        bad, good = (scored.filter(pl.col("outlier") == flag)[score].to_numpy() for flag in (True, False))
        assert bad.min() > np.quantile(good, 0.99), score
        assert bad.mean() > good.mean() + 0.1, score


def test_same_seed_same_output_other_seed_other_sample():
    frame = fleet(*(host_frame(h, 600, seed=i) for i, h in enumerate("ab")))
    settings = {"reference_rows": 300}
    first, again = (fit_transform(frame, seed=7, **settings) for _ in range(2))
    assert first[1].equals(again[1]) and first[0].fitted_statistics() == again[0].fitted_statistics()
    assert json.loads(json.dumps(first[0].fitted_statistics(), allow_nan=False)) == first[0].fitted_statistics()
    other = fit_transform(frame, seed=8, **settings)
    assert other[0].fitted_statistics()["reference"]["sha256"] != first[0].fitted_statistics()["reference"]["sha256"]
    assert not other[1]["iforest_score"].equals(first[1]["iforest_score"])


@pytest.fixture(scope="module")
def simulated_out() -> tuple[AnomalyStage, pl.DataFrame, pl.DataFrame]:
    frame = build_canonical(simulated(SimulatorConfig(hosts=3, duration_seconds=3600)), 5.0, 60.0)[0]
    stage = AnomalyStage().fit(split_by_time(frame, 0.8)[0])
    return stage, frame, stage.transform(frame)


def test_declarations_match_the_columns(simulated_out):
    stage, frame, out = simulated_out
    declared = stage.features()
    assert out.columns == frame.columns + [f.name for f in declared]
    assert len(declared) == 8 + 8 * 3 + 8 + 1 + 2
    for feature in declared:
        assert feature.stage == ANOMALY and feature.unit and feature.description and feature.inputs
        assert feature.streamable and out.schema[feature.name] == pl.Float64
        windowed = "_perm_entropy_" in feature.name or "corr" in feature.name
        assert feature.window == ("300s" if windowed else None), feature.name


def test_no_nan_or_inf_and_nulls_only_in_each_hosts_warm_up(simulated_out):
    stage, _, out = simulated_out
    warm_up = 3 * max(stage.entropy_scales) - 1 + MIN_SAMPLES - 1  # rows a window needs to hold enough patterns
    for feature in stage.features():
        column = out[feature.name]
        assert not (column.is_nan().any() or column.is_infinite().any()), feature.name
        nulls = out.group_by("host").agg(
            n=pl.col(feature.name).is_null().sum(), prefix=pl.col(feature.name).is_null().arg_min()
        )
        if feature.window is None:
            assert nulls["n"].sum() == 0, feature.name
        else:
            assert (nulls["n"] == nulls["prefix"]).all() and nulls["n"].max() <= warm_up, feature.name


def test_windows_do_not_reach_across_a_gap_longer_than_the_window():
    values = np.sin(np.arange(200) / 5)
    frame = fleet(host_frame("a", 100, **{CPU: values[:100]}),
                  host_frame("a", 100, start_s=1500, **{CPU: values[100:]}))  # a 1000 s gap after row 99
    _, out = fit_transform(frame)
    r = out[f"{CPU}_autocorr_300s"]
    assert r[100:100 + MIN_SAMPLES].is_null().all() and r[100 + MIN_SAMPLES] is not None


def test_misuse_is_a_clear_error():
    frame = host_frame("a", 50)
    with pytest.raises(ModelError, match="not fitted"):
        AnomalyStage().transform(frame)
    with pytest.raises(InputError, match="needs column disk_busy_pct"):
        AnomalyStage().fit(frame.drop("disk_busy_pct"))
    with pytest.raises(InputError, match="at least 2 training rows"):
        AnomalyStage().fit(frame.head(1))
    with pytest.raises(InputError, match="each host.s rows together and in time order"):
        AnomalyStage().fit(frame).transform(frame.reverse())


def test_compiled_lof_matches_sklearn_novelty_lof():
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(5)
    reference, rows = rng.normal(size=(256, 8)), rng.normal(size=(2000, 8)) * 2
    ours = Lof(reference, 10)
    theirs = LocalOutlierFactor(n_neighbors=10, novelty=True, algorithm="brute").fit(reference)
    assert np.allclose(ours.score(rows), -theirs.score_samples(rows), rtol=1e-9, atol=0)
    assert np.allclose(ours.training_scores, -theirs.negative_outlier_factor_, rtol=1e-9, atol=0)


def test_lof_score_of_a_row_does_not_depend_on_its_block_or_chunk():
    rng = np.random.default_rng(6)
    reference, rows = rng.normal(size=(256, 8)), rng.normal(size=(2 * _BLOCK + 123, 8)) * 2
    lof = Lof(reference, 10)
    whole = lof.score(rows)
    assert np.array_equal(whole, np.concatenate([lof.score(rows[i:i + 1000]) for i in range(0, len(rows), 1000)]))
    assert np.array_equal(whole[:5], lof.score(np.asfortranarray(rows[:5])))


def test_reference_is_the_sampled_rows_of_the_scaled_training_frame(simulated_out):
    stage, frame, _ = simulated_out
    train = split_by_time(frame, 0.8)[0]
    z = train.join(stage.baselines_, on="host", how="left", maintain_order="left").select(
        ((pl.col(m) - pl.col(f"{m}:median")) / pl.col(f"{m}:scale")).fill_null(0.0) for m in stage.key_metrics
    ).to_numpy()  # every training host has its own baseline
    sample = np.sort(np.random.default_rng(stage.seed).choice(len(z), len(stage.reference_), replace=False))
    assert np.array_equal(stage.reference_, z[sample])


def numpy_lof(reference: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """LOF by its definition: exact distances, the k nearest by a stable sort (the lower index first on ties)."""

    def nearest(distances):
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(distances, order, axis=1)

    within = np.sqrt(((reference[:, None] - reference[None]) ** 2).sum(axis=2))
    np.fill_diagonal(within, np.inf)
    ref_neighbours, ref_distances = nearest(within)
    k_distance = ref_distances[:, -1]
    lrd = 1 / (np.maximum(ref_distances, k_distance[ref_neighbours]).mean(axis=1) + 1e-10)
    neighbours, distances = nearest(np.sqrt(((rows[:, None] - reference[None]) ** 2).sum(axis=2)))
    return lrd[neighbours].mean(axis=1) * (np.maximum(distances, k_distance[neighbours]).mean(axis=1) + 1e-10)


def test_lof_breaks_distance_ties_by_the_lower_reference_index():
    rng = np.random.default_rng(7)
    # small integers: exact arithmetic, duplicate rows and many equal distances
    reference, rows = rng.integers(-2, 3, size=(64, 3)).astype(float), rng.integers(-3, 4, size=(500, 3)).astype(float)
    assert np.allclose(Lof(reference, 5).score(rows), numpy_lof(reference, rows, 5), rtol=1e-12, atol=0)


@pytest.mark.parametrize(("references", "k"), [(256, 20), (12, 5), (3, 2)])
def test_lof_matches_sklearn_for_any_reference_size_and_k(references, k):
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(8)
    reference, rows = rng.normal(size=(references, 4)), rng.normal(size=(300, 4)) * 2
    theirs = LocalOutlierFactor(n_neighbors=k, novelty=True, algorithm="brute").fit(reference)
    assert np.allclose(Lof(reference, k).score(rows), -theirs.score_samples(rows), rtol=1e-9, atol=0)


def test_compiled_forest_equals_sklearns_score_even_at_the_split_thresholds():
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(9)
    iforest = IsolationForest(n_estimators=50, max_samples=256, random_state=0).fit(rng.normal(size=(300, 8)))
    # sklearn's trees compare float32 values: probe each split at its threshold and the float32s around it
    tree = iforest.estimators_[0].tree_
    split = np.flatnonzero(tree.feature >= 0)
    nearest32 = tree.threshold[split].astype(np.float32)
    probes = [tree.threshold[split], nearest32, np.nextafter(nearest32, np.float32(np.inf)),
              np.nextafter(nearest32, np.float32(-np.inf)), np.nextafter(tree.threshold[split], np.inf)]  # fmt: skip
    at_splits = np.zeros((len(split) * len(probes), 8))
    at_splits[np.arange(len(at_splits)), np.tile(tree.feature[split], len(probes))] = np.concatenate(probes)
    rows = np.concatenate([rng.normal(size=(2 * _BLOCK + 5, 8)) * 2, at_splits])
    forest = Forest(iforest)
    ours = forest.score(rows)
    assert np.allclose(ours, -iforest.score_samples(rows), rtol=0, atol=1e-12)
    assert np.array_equal(ours, np.concatenate([forest.score(rows[i:i + 1000]) for i in range(0, len(rows), 1000)]))


def test_median_mad_and_scale_equal_polars():
    rng = np.random.default_rng(10)
    unrepresentative = rng.normal(size=20_000)
    unrepresentative[:: 20_000 // 1024] = 1e6  # every value of the strided sample bracketing the median
    segments = [rng.normal(size=n) * 10.0 ** rng.integers(-3, 9) for n in (1, 2, 3, 10, 11, 5000, 5001, 20_000)]
    segments += [
        np.array([0.7, 0.1]),  # Polars' midpoint 0.4, not (0.1 + 0.7) / 2 = 0.39999999999999997
        np.array([np.nan, np.inf, -np.inf]),  # no finite value
        np.r_[np.full(9000, 0.2), rng.exponential(size=100)],  # MAD 0: the mean absolute deviation
        rng.integers(0, 5, size=6000).astype(float),
        np.r_[rng.normal(size=50), np.nan, np.inf],
        unrepresentative,
    ]
    values = np.concatenate(segments)
    starts = np.cumsum([0] + [len(s) for s in segments])
    ours = median_mad_scale(np.column_stack([values, -values]), starts)

    frame = pl.DataFrame({"segment": np.repeat(np.arange(len(segments)), np.diff(starts)), "x": values, "y": -values})
    for j, column in enumerate("xy"):
        x = pl.when(pl.col(column).is_finite()).then(pl.col(column))
        deviation = (x - x.median()).abs()
        theirs = frame.group_by("segment", maintain_order=True).agg(
            x.median().alias("median"), deviation.median().alias("mad"), deviation.mean().alias("mean_ad")
        )
        for s, name in enumerate(("median", "mad")):
            assert np.array_equal(ours[s, j], theirs[name].to_numpy(), equal_nan=True), (column, name)
        mad, mean_ad, median = theirs["mad"].to_numpy(), theirs["mean_ad"].to_numpy(), theirs["median"].to_numpy()
        scale = np.maximum(np.where(mad > 0, 1.4826 * mad, 1.2533 * mean_ad), 0.01 * np.maximum(np.abs(median), 1.0))
        assert np.allclose(ours[2, j], scale, rtol=1e-15, atol=0, equal_nan=True), column


def test_fit_learns_the_same_baselines_from_rows_in_any_order():
    fails = [0.0] * 290 + [1.0] * 10  # MAD 0
    train = fleet(*(host_frame(h, 300, seed=i, tcp_attempt_fails_per_s=fails) for i, h in enumerate("abc")))
    first, shuffled = AnomalyStage().fit(train), AnomalyStage().fit(train.sample(fraction=1.0, shuffle=True, seed=1))
    assert first.baselines_.equals(shuffled.baselines_) and first.fleet_baseline_.equals(shuffled.fleet_baseline_)
    assert first.baselines_["host"].to_list() == ["a", "b", "c"]


def test_a_fitted_stage_scores_the_same_after_a_joblib_round_trip(tmp_path):
    import joblib

    frame = fleet(*(host_frame(h, 300, seed=i) for i, h in enumerate("ab")))
    stage = AnomalyStage().fit(frame)
    joblib.dump(stage, tmp_path / "stage.joblib")
    assert joblib.load(tmp_path / "stage.joblib").transform(frame).equals(stage.transform(frame))


def test_scoring_rows_of_another_width_is_an_error():
    from sklearn.ensemble import IsolationForest

    reference = np.random.default_rng(11).normal(size=(50, 4))
    with pytest.raises(ValueError, match="rows of 4 values"):
        Lof(reference, 5).score(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="rows of 4 values"):
        Forest(IsolationForest(n_estimators=3, random_state=0).fit(reference)).score(np.zeros(4))


# The windowed kernels (``windowed``) against direct computations, and as a live detector calls them.

W_NS = 300 * 10**9  # the default 300 s window


def windowed_series(sizes=(400, 250, 320), seed=12) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hosts of 5 s rows, the first with a 400 s gap: (integer-valued x with ties, z with NaN runs, ts_ns, starts)."""
    rng = np.random.default_rng(seed)
    ts = np.concatenate([(17 + 1234 * h + 5 * np.arange(n) + 400 * (np.arange(n) >= 150) * (h == 0)) * 10**9
                         for h, n in enumerate(sizes)]).astype(np.int64)  # fmt: skip
    x = rng.integers(0, 4, size=(2, len(ts))).astype(np.float64)
    z = rng.standard_normal((2, len(ts)))
    x[0, 40:43] = z[0, 60:100] = np.nan  # a missing value breaks the patterns and pairs through it
    z[1, 200] = 1e8  # a spike, and a level shift in a missing run: sums of deviations must not cancel after them
    z[1, 240:311] = np.nan
    z[1, 311:] += 1e4
    return x, z, ts, np.cumsum([0, *sizes]).astype(np.int64)


def window_rows(ts: np.ndarray, lo: int, i: int):
    return [j for j in range(lo, i + 1) if ts[i] - ts[j] < W_NS]


def direct_entropy(x: np.ndarray, k: int, ts: np.ndarray, lo: int, i: int) -> float:
    """Over the window of row i of a host starting at lo: -Σ p ln p / ln 6 of the (b > a, c > b, c > a) patterns."""
    y = {j: np.mean(x[j - k + 1 : j + 1]) for j in range(lo + k - 1, i + 1)}
    patterns = []
    for j in window_rows(ts, lo, i):
        oldest = j - 3 * k + 1
        if oldest >= lo and ts[j] - ts[oldest] < W_NS and all(np.isfinite([y[j - 2 * k], y[j - k], y[j]])):
            a, b, c = y[j - 2 * k], y[j - k], y[j]
            patterns.append((b > a, c > b, c > a))
    if len(patterns) < MIN_SAMPLES:
        return np.nan
    p = np.unique(patterns, axis=0, return_counts=True)[1] / len(patterns)
    return float(-(p * np.log(p)).sum() / math.log(6))


def exact_pearson(a: np.ndarray, b: np.ndarray, lag: int, ts: np.ndarray, lo: int, i: int) -> float:
    """r over the window of row i, in exact rational arithmetic (0 for a constant side, NaN in warm-up)."""
    from fractions import Fraction

    rows = [j for j in window_rows(ts, lo, i) if j - lag >= lo and ts[j] - ts[j - lag] < W_NS]
    pairs = [(Fraction(a[j - lag]), Fraction(b[j])) for j in rows if np.isfinite(a[j - lag]) and np.isfinite(b[j])]
    if len(pairs) < MIN_SAMPLES:
        return np.nan
    n = len(pairs)
    ma, mb = sum(p[0] for p in pairs) / n, sum(p[1] for p in pairs) / n
    va, vb = sum((p[0] - ma) ** 2 for p in pairs), sum((p[1] - mb) ** 2 for p in pairs)
    flat = Fraction(1e-10)  # a side whose variance is at most this share of its mean square is constant
    if va <= flat * sum(p[0] ** 2 for p in pairs) or vb <= flat * sum(p[1] ** 2 for p in pairs):
        return 0.0
    return float(np.clip(float(sum((p[0] - ma) * (p[1] - mb) for p in pairs)) / math.sqrt(float(va * vb)), -1, 1))


def test_permutation_entropy_equals_a_direct_count_of_the_patterns():
    x, _, ts, starts = windowed_series()
    scales = (1, 2, 3)
    got = permutation_entropy(x, scales, ts, starts, W_NS)
    for m, k in [(m, k) for m in range(len(x)) for k in scales]:
        want = [direct_entropy(x[m], k, ts, lo, i) for lo, end in zip(starts[:-1], starts[1:]) for i in range(lo, end)]
        np.testing.assert_allclose(got[m * len(scales) + scales.index(k)], want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("lag", [0, 1])
def test_pearson_equals_exact_arithmetic_through_spikes_level_shifts_and_missing_runs(lag):
    _, z, ts, starts = windowed_series()
    got = pearson(z[[1, 0]], z[[1, 1]], lag, ts, starts, W_NS)
    for p in range(2):
        a, b = z[[1, 0][p]], z[1]
        rows = [(lo, i) for lo, end in zip(starts[:-1], starts[1:]) for i in range(lo, end, 3)]
        want = [exact_pearson(a, b, lag, ts, lo, i) for lo, i in rows]
        np.testing.assert_allclose(got[p][[i for _, i in rows]], want, rtol=0, atol=1e-12)


def test_windowed_outputs_from_emit_from_equal_a_full_run_given_two_windows_of_history():
    x, z, ts, starts = windowed_series()
    full = [permutation_entropy(x, (1, 4), ts, starts, W_NS), pearson(z, z, 1, ts, starts, W_NS)]
    for emit in (starts[:-1] + [155, 40, 200], starts[:-1] + [160, 249, 319]):
        # Each host's rows in (t - 2w, t] and the one before, t the time of its first row to emit: a live buffer.
        kept = [np.arange(lo + max((ts[lo:end] > ts[e] - 2 * W_NS).argmax() - 1, 0), end)
                for lo, end, e in zip(starts[:-1], starts[1:], emit)]  # fmt: skip
        rows, buffer_starts = np.concatenate(kept), np.cumsum([0, *map(len, kept)])
        buffer_emit = buffer_starts[:-1] + [e - k[0] for e, k in zip(emit, kept)]
        part = [permutation_entropy(x[:, rows], (1, 4), ts[rows], buffer_starts, W_NS, buffer_emit),
                pearson(z[:, rows], z[:, rows], 1, ts[rows], buffer_starts, W_NS, buffer_emit)]  # fmt: skip
        emitted = np.concatenate([np.arange(e, end) for e, end in zip(buffer_emit, buffer_starts[1:])])
        for whole, buffered in zip(full, part):  # the emitted rows only, host after host
            assert np.array_equal(buffered, whole[:, rows[emitted]], equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_pearson_resumed_from_its_state_micro_batch_after_micro_batch_equals_a_full_run(seed):
    # As a live detector runs it: per call, the hosts with new rows (0-3 each, often mid-block), each with its
    # kept rows of the last 2w, and its state from the call before. Host 0's gap and z[1]'s missing run longer
    # than the window (windows without pairs, where the state cannot hold) are in the series.
    _, z, ts, starts = windowed_series()
    full = [pearson(z, z, 1, ts, starts, W_NS), pearson(z[:1], z[1:], 0, ts, starts, W_NS)]
    rng = np.random.default_rng(seed)
    states = [np.zeros((len(starts) - 1, 2, PEARSON_STATE)), np.zeros((len(starts) - 1, 1, PEARSON_STATE))]
    done, calls = starts[:-1].copy(), 0
    while np.any(done < starts[1:]):
        upto = np.minimum(done + rng.integers(0, 4, len(done)), starts[1:])
        if not len(hosts := np.flatnonzero(upto > done)):
            continue
        kept = [np.arange(max(starts[h], done[h] - 2 * W_NS // (5 * 10**9) - 1), upto[h]) for h in hosts]
        rows, buffer_starts = np.concatenate(kept), np.cumsum([0, *map(len, kept)])
        buffer_emit = buffer_starts[:-1] + (done[hosts] - [k[0] for k in kept])
        emitted = rows[np.concatenate([np.arange(e, end) for e, end in zip(buffer_emit, buffer_starts[1:])])]
        for (a, b, lag), whole, state in zip([(z, z, 1), (z[:1], z[1:], 0)], full, states):
            host_state = state[hosts]
            part = pearson(a[:, rows], b[:, rows], lag, ts[rows], buffer_starts, W_NS, buffer_emit, host_state)
            state[hosts] = host_state
            assert np.array_equal(part, whole[:, emitted], equal_nan=True), f"call {calls}"
        done, calls = upto, calls + 1
    assert states[0][:, :, 0].all()  # it holds at the end, after the windows without pairs
