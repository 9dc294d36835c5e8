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
    canonical = StreamCanonical(config.pipeline.interval_seconds, config.pipeline.max_fill_seconds)
    snaps = raw.snapshots.sort("ts_ns", "host", maintain_order=True)
    names = tuple(c for c in snaps.columns if c not in ("host", "ts_ns"))
    hosts = sorted(snaps["host"].unique())
    slot = {h: i for i, h in enumerate(hosts)}
    minute = (snaps["ts_ns"] // (PUSH_S * 10**9)).to_numpy()
    parts = []
    for lo, hi in _runs(minute):
        part = snaps[lo:hi]
        values = part.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
        rows = canonical.push(np.array([slot[h] for h in part["host"]]), part["ts_ns"].to_numpy(),
                              canonical.raw_matrix(names, values))  # fmt: skip
        parts.append(features.push(rows, hosts))
    stream = pl.concat(parts).sort("host", "ts")
    return batch, stream, features, made


def _runs(keys: np.ndarray):
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return zip([0, *cuts], [*cuts, len(keys)])


def test_every_row_and_feature_is_the_batch_one(both):
    batch, stream, features, _ = both
    assert stream.select("host", "ts").equals(batch.select("host", "ts"))
    assert stream.columns == ["host", "ts", *features.names]
    assert len(features.names) >= 100 and set(features.names) <= set(batch.columns)
    for name in features.names:
        want = batch[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        got = stream[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: nulls differ"
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=0, equal_nan=True, err_msg=name)


def test_the_live_model_scores_stream_rows_as_batch_rows(both):
    batch, stream, _, made = both
    model = get("live", member_params={"iforest": {"n_estimators": 50}}).fit(made.train, made.train["label"].to_numpy())
    np.testing.assert_allclose(model.score_samples(stream), model.score_samples(batch), rtol=1e-9, atol=1e-9)


def test_state_per_host_is_bounded(both):
    _, _, features, _ = both
    assert features.bytes_per_host() < 64 * 1024
