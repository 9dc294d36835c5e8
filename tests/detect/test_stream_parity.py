"""The stream computes the batch pipeline's features, and the live model gives the same scores, row for row.

The same raw snapshots go through the batch pipeline (all at once) and through the
stream (stage 1 + ``StreamFeatures``, pushed a minute of arrivals at a time, hosts
interleaved); two hours of a small fleet, so that every history ring wraps (the
security baselines look back an hour), with gaps, duplicates and bad values.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from amoskys.config import Config, PipelineConfig
from amoskys.detect.canonical import StreamCanonical
from amoskys.detect.features import StreamFeatures
from amoskys.models import get
from amoskys.models.rows import FeatureRows
from amoskys.pipeline.anomaly import AnomalyStage
from amoskys.pipeline.run import StageClock, compute_features

from .test_canonical_stream import awkward_fleet

PUSH_S = 60


@pytest.fixture(scope="module")
def both():
    raw = awkward_fleet(duration_s=2 * 3600 + 600)
    config = Config(pipeline=PipelineConfig())
    clock = StageClock(verbose=False)
    made = compute_features(raw, config, clock)
    clock.close()
    batch = pl.concat([made.train, made.val]).sort("host", "ts")

    features = StreamFeatures(config, made.anomaly)
    stream = _pushed(raw.snapshots, config, features)
    return batch, stream, features, made, raw


def _pushed(snapshots: pl.DataFrame, config: Config, features: StreamFeatures, swap=None) -> list[FeatureRows]:
    """The stream's rows of snapshots, pushed a minute of arrivals at a time (a FeatureRows per push); swap:
    (ts_ns, stage 5) to use from the first push at or after ts_ns on."""
    canonical = StreamCanonical(config.pipeline.interval_seconds, config.pipeline.max_fill_seconds)
    snaps = snapshots.sort("ts_ns", "host", maintain_order=True)
    names = tuple(c for c in snaps.columns if c not in ("host", "ts_ns"))
    hosts = sorted(snaps["host"].unique())
    slot = {h: i for i, h in enumerate(hosts)}
    minute = (snaps["ts_ns"] // (PUSH_S * 10**9)).to_numpy()
    parts = []
    for lo, hi in _runs(minute):
        part = snaps[lo:hi]
        if swap is not None and part["ts_ns"][0] >= swap[0]:
            features.use_stage5(swap[1])
            swap = None
        values = part.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
        rows = canonical.push(np.array([slot[h] for h in part["host"]]), part["ts_ns"].to_numpy(),
                              canonical.raw_matrix(names, values))  # fmt: skip
        parts.append(features.push(rows, hosts))
    return parts


def _frame(parts: list[FeatureRows]) -> pl.DataFrame:
    return pl.concat([part.frame() for part in parts]).sort("host", "ts")


def _runs(keys: np.ndarray):
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return zip([0, *cuts], [*cuts, len(keys)])


def test_every_row_and_feature_is_the_batch_one(both):
    batch, parts, features, _, _ = both
    stream = _frame(parts)
    assert stream.select("host", "ts").equals(batch.select("host", "ts"))
    assert stream.columns == ["host", "ts", *features.names]
    assert len(features.names) >= 100 and set(features.names) <= set(batch.columns)
    for name in features.names:
        want = batch[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        got = stream[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: nulls differ"
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, equal_nan=True, err_msg=name)


def test_the_live_model_scores_stream_rows_as_batch_rows(both):
    # scored as the detector scores them: each push's FeatureRows, no frame
    batch, parts, _, made, _ = both
    model = get("live", member_params={"iforest": {"n_estimators": 50}}).fit(made.train, made.train["label"].to_numpy())
    scored = pl.concat(
        pl.DataFrame({"host": part.hosts, "ts_ns": part.ts_ns, "score": model.score_samples(part)}) for part in parts
    ).sort("host", "ts_ns")
    assert scored.height == batch.height
    np.testing.assert_allclose(scored["score"].to_numpy(), model.score_samples(batch), rtol=1e-9, atol=1e-9)


def test_state_per_host_is_bounded(both):
    _, _, features, _, _ = both
    assert features.bytes_per_host() < 64 * 1024


def test_after_a_stage5_swap_the_stream_computes_the_new_stage(both):
    # Swapped mid-block, mid-run: each host's stage-5 baseline and correlation sums must start over from the kept
    # rows, or the rows after the swap mix the old stage's robust z into the new one's windows.
    batch, _, _, made, raw = both
    config = Config(pipeline=PipelineConfig())
    half = made.train["ts"].min() + (made.train["ts"].max() - made.train["ts"].min()) / 2
    other = AnomalyStage().fit(made.train.filter(pl.col("ts") < half))  # other baselines, the same features
    names = [f.name for f in other.features()]
    block_ns = 300 * 10**9  # stage 5's window; 180 s into a block is the start of a minute, and of a push
    swap_ns = int(batch["ts"].dt.epoch("ns").quantile(0.6)) // block_ns * block_ns + 180 * 10**9
    stream = _frame(_pushed(raw.snapshots, config, StreamFeatures(config, made.anomaly), (swap_ns, other)))
    want = other.transform(batch.drop(names)).filter(pl.col("ts").dt.epoch("ns") >= swap_ns)
    got = stream.filter(pl.col("ts").dt.epoch("ns") >= swap_ns)
    assert got.height > 1000 and got.select("host", "ts").equals(want.select("host", "ts"))
    for name in names:
        np.testing.assert_allclose(got[name].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                                   want[name].cast(pl.Float64).fill_null(np.nan).to_numpy(), rtol=1e-9, atol=0,
                                   equal_nan=True, err_msg=name)  # fmt: skip
