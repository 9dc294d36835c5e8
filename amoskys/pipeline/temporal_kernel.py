"""Stage 2's compiled kernel: every windowed statistic and EWM of the key metrics, per host.

``temporal_arrays`` computes, from host-sorted times and metrics, per metric an array
with a row per feature: the ``STATS`` of each window, then one EWM per half-life
(``temporal``'s docstring defines them). One array per metric, not one for all: the rows
become frame columns, and a metric's columns are freed together, not all stage 2's.

Windows, one per pass over a host's rows: time is cut into blocks one window long,
[k·w, (k + 1)·w) since the epoch; the window (t − w, t] of a row of block k is then a
suffix of block k − 1 and a prefix of block k (van Herk / Gil-Werman). A backward pass
over each block keeps the sums of its suffixes, a forward pass adds up its prefix and
merges the two: O(1) per row and window, whatever the window's length. The sums are of
deviations (du, dx) from the first sample of block k, which every window of block k
holds: nothing is ever subtracted out of a running sum, a constant window's variation
is exactly 0, and mean(dx²) − mean(dx)² loses at most the digits by which the window's
range exceeds its standard deviation, however large the gauge (bytes in the billions).
Time deviations are whole nanoseconds, exact in float64 (for windows under 52 days). Every value of a
row depends on the samples of its window only, and bit for bit: not on where the pass
started, so a stream run matches the batch run exactly.

EWMs: m₀ = x₀, mᵢ = a·xᵢ + (1 − a)·mᵢ₋₁ with 1 − a = 0.5^(Δt / h), and mᵢ = xᵢ when xᵢ
equals mᵢ₋₁: Polars' ``ewm_mean_by``, operation for operation (so bit for bit).

Stream use: a live detector passes each host's buffered rows followed by its new rows,
and ``emit_from``, per host the index of its first new row: earlier rows are read as
history only, and the outputs are the new rows' (``jit.output_columns``). A window
output needs the rows of the last max(w) seconds, both ends included (``roc`` reads the
sample exactly w ago): on a 5 s grid, max(w) / 5 + 1 rows. An EWM needs every row since
the host's first, or its value at an earlier time: ``ewm_from`` (per metric and
half-life; the EWM outputs of the last row processed) and ``ewm_from_ns`` (that row's
time), from which the recurrence resumes at ``emit_from``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amoskys.pipeline.jit import by_hosts, njit, output_columns

STATS = ("mean", "std", "min", "max", "roc", "slope", "volatility")
_MEAN, _STD, _MIN, _MAX, _ROC, _SLOPE, _VOLATILITY = range(len(STATS))
NO_EWM_STATE = np.iinfo(np.int64).min  # ``ewm_from_ns`` of a host whose EWMs start at its first row
_NS = 1e9


def rows_per_metric(windows: int, half_lives: int) -> int:
    """Output rows per metric: its ``STATS`` for each window (window-major), then its EWMs."""
    return windows * len(STATS) + half_lives


def temporal_arrays(
    ts_ns: np.ndarray,
    x: Sequence[np.ndarray],
    starts: np.ndarray,
    windows_s: tuple[float, ...],
    half_lives_s: tuple[float, ...],
    emit_from: np.ndarray | None = None,
    ewm_from: np.ndarray | None = None,
    ewm_from_ns: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Per metric, the (``rows_per_metric``, rows computed) array of its stage-2 features.

    ts_ns: int64 nanoseconds, increasing within each host's segment ``starts[s]:starts[s + 1]``;
    x: per metric, its values (rows), never NaN. emit_from: per host, the first row to compute (default: the
    host's first; the result then has a column per row of ts_ns). ewm_from: (hosts, metrics, half-lives) EWM
    values at the times ewm_from_ns, ``NO_EWM_STATE`` for a host without them (default: none has them).
    """
    if min((*windows_s, *half_lives_s), default=1.0) <= 0:
        raise ValueError(f"windows and half-lives must be positive: {windows_s}, {half_lives_s}")
    hosts, metrics = len(starts) - 1, len(x)
    emit_from, shift, columns = output_columns(starts, emit_from)
    if np.any(emit_from < starts[:-1]) or np.any(emit_from > starts[1:]):
        raise ValueError("emit_from must lie within each host's rows")
    if (ewm_from is None) != (ewm_from_ns is None):
        raise ValueError("ewm_from and ewm_from_ns go together")
    if ewm_from is None:
        ewm_from = np.zeros((hosts, metrics, len(half_lives_s)))
        ewm_from_ns = np.full(hosts, NO_EWM_STATE)
    ts_ns, ewm_from_ns = np.ascontiguousarray(ts_ns, dtype=np.int64), np.asarray(ewm_from_ns, dtype=np.int64)
    features = []
    for m in range(metrics):
        out = np.empty((rows_per_metric(len(windows_s), len(half_lives_s)), columns))
        by_hosts(_metric_features, starts, ts_ns, np.ascontiguousarray(x[m], dtype=np.float64), _ns(windows_s),
                 _ns(half_lives_s), emit_from, shift, np.ascontiguousarray(ewm_from[:, m], dtype=np.float64),
                 ewm_from_ns, out)  # fmt: skip
        features.append(out)
    return features


def _ns(durations_s: tuple[float, ...]) -> np.ndarray:
    return np.array([round(d * _NS) for d in durations_s], dtype=np.int64)


@njit
def _metric_features(first, last, starts, ts_ns, x, windows_ns, half_lives_ns, emit_from, shift, ewm_from,
                     ewm_from_ns, out):  # fmt: skip
    """One metric's features (rows of out, ``rows_per_metric``) for hosts first..last - 1; row i's go to
    column i + shift[s]."""
    for s in range(first, last):
        lo, hi, emit = starts[s], starts[s + 1], emit_from[s]
        if emit == hi:
            continue
        suffix = np.empty((hi - lo, len(_EMPTY)))
        for k in range(len(windows_ns)):
            stats = out[k * len(STATS) : (k + 1) * len(STATS)]
            _window_stats(ts_ns, x, windows_ns[k], lo, hi, emit, shift[s], suffix, stats)
        first_ewm = len(windows_ns) * len(STATS)
        for h in range(len(half_lives_ns)):
            _ewm(ts_ns, x, half_lives_ns[h], lo, hi, emit, shift[s], ewm_from[s, h], ewm_from_ns[s], out[first_ewm + h])


@njit
def _window_stats(ts_ns, x, window_ns, lo, hi, emit, shift, suffix, stats):
    """One metric's ``STATS`` over one window (into the rows of stats, row i at column i + shift), for rows
    emit..hi - 1 of the segment lo:hi; suffix: scratch, one row per row of the segment."""
    start = _oldest(ts_ns, lo, emit, window_ns)  # the oldest row an output reads
    oldest, at_edge = start, lo  # of the current row's (t - w, t], and of [t - w, t] for its roc
    window_s = window_ns / _NS
    begin = start
    while begin < hi:  # a block: begin..end - 1
        block_end_ns = (ts_ns[begin] // window_ns + 1) * window_ns
        end = begin
        while end < hi and ts_ns[end] < block_end_ns:
            end += 1
        if end < hi:  # the next block's windows read this block's suffixes, anchored at its first sample
            _keep_suffixes(ts_ns, x, lo, begin, end, end, suffix)
        prefix = _EMPTY
        for i in range(begin, end if end > emit else begin):  # a block wholly before emit: its suffixes only
            prefix = _add(prefix, float(ts_ns[i] - ts_ns[begin]), x[i] - x[begin], x[i])
            if i < emit:
                continue
            while ts_ns[oldest] <= ts_ns[i] - window_ns:
                oldest += 1
            while ts_ns[at_edge] < ts_ns[i] - window_ns:
                at_edge += 1
            window = _merge(_suffix(suffix, oldest - lo), prefix) if oldest < begin else prefix
            _write_stats(window, i - oldest + 1, x[begin], x[i] - x[at_edge], window_s, stats, i + shift)
        begin = end


@njit
def _oldest(ts_ns, lo, i, window_ns):
    """The oldest row of row i's window (t - w, t] in the segment from lo."""
    j = i
    while j > lo and ts_ns[j - 1] > ts_ns[i] - window_ns:
        j -= 1
    return j


# Part of a window, summed as deviations (du, dx) from an anchor sample: Σdu, Σdu², Σdx,
# Σdx², Σdu·dx, and its lowest and highest value.
_EMPTY = (0.0, 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf)


@njit
def _add(sums, du, dx, x):
    return (sums[0] + du, sums[1] + du * du, sums[2] + dx, sums[3] + dx * dx, sums[4] + du * dx, min(sums[5], x),
            max(sums[6], x))  # fmt: skip


@njit
def _merge(a, b):
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4], min(a[5], b[5]), max(a[6], b[6]))


@njit
def _keep_suffixes(ts_ns, x, lo, begin, end, anchor, suffix):
    """suffix[j - lo] = the sums of rows j..end - 1 about row anchor, for each row j of begin..end - 1."""
    sums = _EMPTY
    for j in range(end - 1, begin - 1, -1):
        sums = _add(sums, float(ts_ns[j] - ts_ns[anchor]), x[j] - x[anchor], x[j])
        for f in range(len(sums)):
            suffix[j - lo, f] = sums[f]


@njit
def _suffix(suffix, j):
    s = suffix[j]
    return (s[0], s[1], s[2], s[3], s[4], s[5], s[6])


@njit
def _write_stats(sums, n, anchor, change, window_s, stats, i):
    """Column i of the ``STATS``, from the sums of its n samples about anchor, and its change over the window."""
    share = 1.0 / n
    mean_du, mean_dx = sums[0] * share, sums[2] * share
    var_u = sums[1] * share - mean_du * mean_du
    std = np.sqrt(max(sums[3] * share - mean_dx * mean_dx, 0.0))
    mean = anchor + mean_dx
    stats[_MEAN, i] = mean
    stats[_STD, i] = std
    stats[_MIN, i] = sums[5]
    stats[_MAX, i] = sums[6]
    stats[_ROC, i] = change / window_s
    stats[_SLOPE, i] = (sums[4] * share - mean_du * mean_dx) / var_u * _NS if var_u > 0.0 else 0.0  # per second
    stats[_VOLATILITY, i] = std / abs(mean) if mean != 0.0 else np.nan


@njit
def _ewm(ts_ns, x, half_life_ns, lo, hi, emit, shift, state, state_ns, out):
    """One metric's EWM for rows emit..hi - 1 of the segment lo:hi (row i at out[i + shift]), from state at
    state_ns if given, else from the segment's first row."""
    if state_ns == NO_EWM_STATE:
        ewm, previous_ns, begin = x[lo], ts_ns[lo], lo + 1
        if emit == lo:
            out[lo + shift] = ewm
    else:
        ewm, previous_ns, begin = state, state_ns, emit
    keep, step_ns = 0.0, -1  # the weight 1 - a after a step of step_ns
    for i in range(begin, hi):
        if ts_ns[i] - previous_ns != step_ns:  # on a regular grid, the weight stays that of the row before
            step_ns = ts_ns[i] - previous_ns
            keep = 0.5 ** (step_ns / half_life_ns)
        previous_ns = ts_ns[i]
        ewm = (1.0 - keep) * x[i] + keep * ewm if x[i] != ewm else x[i]
        if i >= emit:
            out[i + shift] = ewm
