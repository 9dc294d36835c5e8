"""Running medians: each new row's median over its host's rows in [t - span, t), as a fresh sort gives it."""

from __future__ import annotations

import numpy as np

from amoskys.detect.medians import RunningMedians

NS = 1_000_000_000


def naive(ts: np.ndarray, values: np.ndarray, span_ns: int) -> np.ndarray:
    out = np.full(values.shape, np.nan)
    for i in range(len(ts)):
        inside = (ts >= ts[i] - span_ns) & (ts < ts[i])
        for m in range(values.shape[1]):
            window = values[inside, m]
            window = window[~np.isnan(window)]
            out[i, m] = np.median(window) if len(window) else np.nan
    return out


def test_each_row_gets_the_median_of_its_hosts_window_pushed_in_any_batches():
    rng = np.random.default_rng(3)
    span_ns, step_ns = 60 * NS, 5 * NS
    hosts = {}
    for h in range(3):  # gaps (longer than the window, too), NaN values, ties
        ts = np.cumsum(rng.choice([step_ns, step_ns, 2 * step_ns, 20 * step_ns], size=120))
        values = rng.integers(0, 6, size=(120, 2)).astype(float)
        values[rng.random(values.shape) < 0.15] = np.nan
        hosts[h] = (ts, values)
    medians = RunningMedians(2, span_ns, span_ns // step_ns + 1)
    medians.reserve(3)
    got = {h: [] for h in hosts}
    position = dict.fromkeys(hosts, 0)
    while any(position[h] < 120 for h in hosts):  # micro-batches of 0-3 rows per host
        batch = {h: rng.integers(0, 4) for h in hosts}
        chosen = [h for h in hosts if position[h] < 120 and batch[h]]
        starts, ts, values = [0], [], []
        for h in chosen:
            end = min(position[h] + batch[h], 120)
            ts.append(hosts[h][0][position[h]:end])
            values.append(hosts[h][1][position[h]:end])
            starts.append(starts[-1] + end - position[h])
            position[h] = end
        if not chosen:
            continue
        out = medians.push(np.array(chosen), np.array(starts), np.concatenate(ts), np.concatenate(values))
        for i, h in enumerate(chosen):
            got[h].append(out[starts[i]:starts[i + 1]])
    for h, (ts, values) in hosts.items():
        np.testing.assert_array_equal(np.concatenate(got[h]), naive(ts, values, span_ns))
