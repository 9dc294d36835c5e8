"""The per-host kernel plumbing: segments and the split of hosts over threads."""

from __future__ import annotations

import numpy as np
import polars as pl

from amoskys.pipeline.jit import by_hosts, njit, segments


@njit
def _host_sums(first, last, starts, values, out):
    for s in range(first, last):
        total = 0.0
        for i in range(starts[s], starts[s + 1]):
            total += values[i]
            out[i] = total  # a running sum that must never reach across hosts


def test_segments_mark_each_host_run():
    assert segments(pl.Series(["a", "a", "b", "c", "c", "c"])).tolist() == [0, 2, 3, 6]
    assert segments(pl.Series([], dtype=pl.String)).tolist() == [0]


def test_every_host_is_handled_once_and_alone():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 500, size=37)  # uneven hosts, more than threads
    host = pl.Series(np.repeat(np.arange(len(sizes)), sizes))
    values = rng.random(len(host))
    out = np.full(len(host), np.nan)
    by_hosts(_host_sums, segments(host), values, out)
    want = pl.DataFrame({"host": host, "v": values}).select(pl.col("v").cum_sum().over("host")).to_series()
    np.testing.assert_allclose(out, want.to_numpy(), rtol=1e-12)


def test_no_hosts_is_nothing_to_do():
    by_hosts(_host_sums, np.array([0], dtype=np.int64), np.empty(0), np.empty(0))
