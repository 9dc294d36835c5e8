"""Running pattern counts: each new row's permutation entropies, as the batch kernel gives them over the whole
history, bit for bit, whatever the micro-batches."""

from __future__ import annotations

import numpy as np
import pytest

from amoskys.detect.patterns import RunningPatterns
from amoskys.pipeline.windowed import permutation_entropy

NS = 1_000_000_000
SCALES = (1, 2, 4)


@pytest.mark.parametrize("window_s", [60, 120])  # 60 s: some patterns span exactly the window (not formed)
def test_each_row_gets_the_batch_entropies_of_its_host_pushed_in_any_batches(window_s):
    rng = np.random.default_rng(5)
    window_ns, step_ns, rows = window_s * NS, 5 * NS, 200
    hosts = {}
    for h in range(3):  # gaps (some longer than the window), NaN values, ties, flat stretches
        ts = np.cumsum(rng.choice([step_ns] * 20 + [2 * step_ns, 30 * step_ns], size=rows))
        ties = rng.integers(0, 4, size=(rows, 2)).astype(float)
        values = ties + rng.random((rows, 2)) * (rng.random((rows, 2)) < 0.5)
        values[rng.random(values.shape) < 0.03] = np.nan
        values[40:60, 0] = 7.0
        hosts[h] = (ts, values)
    patterns = RunningPatterns(2, SCALES, window_ns, window_ns // step_ns + 1)
    patterns.reserve(3)
    got = {h: [] for h in hosts}
    position = dict.fromkeys(hosts, 0)
    while any(position[h] < rows for h in hosts):  # micro-batches of 0-3 rows per host
        batch = {h: rng.integers(0, 4) for h in hosts}
        chosen = [h for h in hosts if position[h] < rows and batch[h]]
        if not chosen:
            continue
        starts, ts, values = [0], [], []
        for h in chosen:
            end = min(position[h] + batch[h], rows)
            ts.append(hosts[h][0][position[h] : end])
            values.append(hosts[h][1][position[h] : end])
            starts.append(starts[-1] + end - position[h])
            position[h] = end
        out = patterns.push(np.array(chosen), np.array(starts), np.concatenate(ts), np.concatenate(values))
        for i, h in enumerate(chosen):
            got[h].append(out[:, starts[i] : starts[i + 1]])
    for h, (ts, values) in hosts.items():
        want = permutation_entropy(values.T, SCALES, ts, np.array([0, rows]), window_ns)
        assert (np.isfinite(want).sum(axis=1) > 5).all()  # entropies at every scale, not only warm-up
        assert np.array_equal(np.concatenate(got[h], axis=1), want, equal_nan=True)


def test_the_state_per_host_is_a_few_kilobytes():
    patterns = RunningPatterns(8, SCALES, 300 * NS, 62)
    assert 2_000 < patterns.bytes_per_host() < 4_000
