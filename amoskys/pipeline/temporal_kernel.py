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

from amoskys.pipeline.jit import by_hosts, njit, output_columns, read_only

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
    # one array per metric (module docstring), handed to the kernel as a tuple
    out = tuple(np.empty((rows_per_metric(len(windows_s), len(half_lives_s)), columns)) for _ in range(metrics))
    by_hosts(_host_features, starts, ts_ns, tuple(read_only(values) for values in x), _ns(windows_s),
             _ns(half_lives_s), emit_from, shift, np.ascontiguousarray(ewm_from, dtype=np.float64), ewm_from_ns,
             out, computed=columns)  # fmt: skip
    return list(out)


def _ns(durations_s: tuple[float, ...]) -> np.ndarray:
    return np.array([round(d * _NS) for d in durations_s], dtype=np.int64)


@njit
def _host_features(first, last, starts, ts_ns, x, windows_ns, half_lives_ns, emit_from, shift, ewm_from, ewm_from_ns,
                   out):  # fmt: skip
    """Every metric's features (out[m], ``rows_per_metric`` rows) for hosts first..last - 1; row i's go to column
    i + shift[s]. Where each window's blocks begin and each row's window begins depend on the times only: found
    once for all metrics."""
    # scratch for the longest host, allocated once: an allocation per host cost more than a live row's work
    longest = np.max(starts[first + 1 : last + 1] - starts[first:last])
    suffix, edges = np.empty((longest, len(_EMPTY))), np.empty((2, longest), dtype=np.int64)
    bounds = np.empty(longest + 1, dtype=np.int64)
    for s in range(first, last):
        lo, hi, emit = starts[s], starts[s + 1], emit_from[s]
        if emit == hi:
            continue
        for k in range(len(windows_ns)):
            start = _oldest(ts_ns, lo, emit, windows_ns[k])  # the oldest row an output reads
            blocks = _blocks(ts_ns, start, hi, windows_ns[k], bounds)
            _edges(ts_ns, lo, start, emit, hi, windows_ns[k], edges)
            for m in range(len(x)):
                _window_stats(ts_ns, x[m], windows_ns[k], lo, hi, emit, shift[s], bounds, blocks, edges, suffix, out[m],
                              k * len(STATS))  # fmt: skip
        first_ewm = len(windows_ns) * len(STATS)
        for m in range(len(x)):
            for h in range(len(half_lives_ns)):
                _ewm(ts_ns, x[m], half_lives_ns[h], lo, hi, emit, shift[s], ewm_from[s, m, h], ewm_from_ns[s],
                     out[m][first_ewm + h])  # fmt: skip


@njit
def _blocks(ts_ns, start, hi, window_ns, bounds):
    """Into bounds, and returns how many: the first row of each block (one window long, on the epoch) from
    start, then hi."""
    begin, n = start, 0
    while begin < hi:
        bounds[n], n = begin, n + 1
        block_end_ns = (ts_ns[begin] // window_ns + 1) * window_ns
        while begin < hi and ts_ns[begin] < block_end_ns:
            begin += 1
    bounds[n] = hi
    return n + 1


@njit
def _edges(ts_ns, lo, start, emit, hi, window_ns, edges):
    """Into edges[:, i - emit], for each row i of emit..hi - 1: the oldest row of its window (t - w, t], and of
    [t - w, t] (its roc's); start: the oldest row of emit's window."""
    oldest = start
    at_edge = max(lo, oldest - 1)  # the row exactly w before, if any, is the one before the window's
    for i in range(emit, hi):
        while ts_ns[oldest] <= ts_ns[i] - window_ns:
            oldest += 1
        while ts_ns[at_edge] < ts_ns[i] - window_ns:
            at_edge += 1
        edges[0, i - emit], edges[1, i - emit] = oldest, at_edge


@njit
def _window_stats(ts_ns, x, window_ns, lo, hi, emit, shift, bounds, blocks, edges, suffix, out, first_row):
    """One metric's ``STATS`` over one window (into the rows of out from first_row, row i at column i + shift),
    for rows emit..hi - 1 of the segment lo:hi, block by block (``_blocks``, ``_edges``); suffix: scratch, one
    row per row of the segment. (Indices into out and bounds rather than views of them: a view per call costs
    more than a live row's statistics.)"""
    window_s = window_ns / _NS
    for b in range(blocks - 1):
        begin, end = bounds[b], bounds[b + 1]
        if end < hi:  # the next block's windows read this block's suffixes, anchored at its first sample
            _keep_suffixes(ts_ns, x, lo, begin, end, end, suffix)
        prefix = _EMPTY
        for i in range(begin, end if end > emit else begin):  # a block wholly before emit: its suffixes only
            prefix = _add(prefix, float(ts_ns[i] - ts_ns[begin]), x[i] - x[begin], x[i])
            if i < emit:
                continue
            oldest, at_edge = edges[0, i - emit], edges[1, i - emit]
            window = _merge(_suffix(suffix, oldest - lo), prefix) if oldest < begin else prefix
            _write_stats(window, i - oldest + 1, x[begin], x[i] - x[at_edge], window_s, out, first_row, i + shift)


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
        # index by index: a loop indexing the tuple at run time, or a view of the row, costs more than the sums
        r = j - lo
        suffix[r, 0], suffix[r, 1], suffix[r, 2], suffix[r, 3], suffix[r, 4], suffix[r, 5], suffix[r, 6] = sums


@njit
def _suffix(suffix, j):
    return (suffix[j, 0], suffix[j, 1], suffix[j, 2], suffix[j, 3], suffix[j, 4], suffix[j, 5], suffix[j, 6])


@njit
def _write_stats(sums, n, anchor, change, window_s, out, first_row, i):
    """Column i of the ``STATS`` (rows of out from first_row), from the sums of its n samples about anchor, and its
    change over the window."""
    share = 1.0 / n
    mean_du, mean_dx = sums[0] * share, sums[2] * share
    var_u = sums[1] * share - mean_du * mean_du
    std = np.sqrt(max(sums[3] * share - mean_dx * mean_dx, 0.0))
    mean = anchor + mean_dx
    out[first_row + _MEAN, i] = mean
    out[first_row + _STD, i] = std
    out[first_row + _MIN, i] = sums[5]
    out[first_row + _MAX, i] = sums[6]
    out[first_row + _ROC, i] = change / window_s
    out[first_row + _SLOPE, i] = (sums[4] * share - mean_du * mean_dx) / var_u * _NS if var_u > 0.0 else 0.0  # per s
    out[first_row + _VOLATILITY, i] = std / abs(mean) if mean != 0.0 else np.nan


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
