"""Stage 5's windowed statistics over (t − w, t] of each host: ordinal-pattern entropy and Pearson's r.

Compiled per-host kernels (see ``jit``) over rows sorted by host then time. A pair or
pattern belongs to the row of its newest sample and counts in every window holding that
row; it is formed only from samples of the same host less than w apart, so nothing
spans a host change or a gap.

- Pattern counts are integers, slid exactly: a row's pattern is added as the row enters
  the window and removed as it leaves.
- Pearson's r needs window sums of floats. Sliding those (adding the row that enters,
  subtracting the one that leaves) would carry the rounding error of one huge value
  into later windows. Instead time is cut into blocks of length w, aligned on the
  epoch: a row's window lies in its block and the one before, so its sums are a suffix
  sum over the earlier block plus a prefix sum over its own, nothing subtracted. They
  are sums of deviations d from a reference pair that the window holds, so
  n Σd² − (Σd)² cancels by a factor of at most about n (raw sums n Σa² − (Σa)² cancel
  without bound): the newest pair up to the block's first row, which every window of
  the block holds until its oldest row passes it, and then (the window's pairs all
  lying in the block) the block's oldest pair.

Streaming: a kernel computes only the rows of each host from ``emit_from`` on, reading
earlier rows as history, and its output holds those rows only (``jit.output_columns``).
An output at time t is exactly that of a run over the whole history when the rows
given hold the host's rows in (t − 2w, t] and the row just before them (a window's
oldest pattern or pair reaches back up to w more): on the 5 s grid with w = 300 s, the
120 rows before the first row to emit. Given a stream's state (``pearson``), Pearson
resumes from each host's sums of the current block instead of summing them again.
"""

from __future__ import annotations

import math

import numpy as np

from amoskys.pipeline.jit import by_hosts, njit, output_columns

MIN_SAMPLES = 5  # fewer pairs or patterns in a window: warm-up, null
_FLAT = 1e-10  # a window whose variance is below this share of its mean square is constant
PATTERNS = 6  # order-3 ordinal patterns; a row's code is PATTERNS where it has none
_LOG_PATTERNS = math.log(PATTERNS)
_SUMS = 6  # Pearson sums of pairs: n, Σa, Σb, Σa², Σb², Σab (of deviations from the reference)
_NO_PAIRS = (0.0,) * _SUMS
# A stream's Pearson state per host and series, at its last row: whether it holds, how many rows before that row
# the reference pair is, the reference pair, and the sums of the last block's pairs (``pearson``).
_HOLDS, _BACK, _REF_A, _REF_B, _BLOCK_SUMS = 0, 1, 2, 3, 4
PEARSON_STATE = _BLOCK_SUMS + _SUMS


def permutation_entropy(x, scales, ts_ns: np.ndarray, starts: np.ndarray, window_ns: int,
                        emit_from: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Normalised order-3 permutation entropy of each series x[m] (NaN = missing) averaged over k samples.

    Row m·len(scales) + j of the result is series m at scale scales[j]: at each row, over
    its window, (n ln n − Σ c ln c) / (n ln 6) of the counts c of the n patterns, exactly
    0 when one pattern fills the window; NaN in warm-up (n < ``MIN_SAMPLES``). A row's
    pattern is the rank order of (y[i − 2k], y[i − k], y[i]), y the mean of the k samples
    ending at each row, ties counting as "not greater"; all 3k samples must be less than w
    apart.
    """
    x, scales = np.ascontiguousarray(x, dtype=np.float64), np.asarray(scales, dtype=np.int64)
    emit_from, shift, columns = output_columns(starts, emit_from)
    out = np.empty((len(x) * len(scales), columns))
    by_hosts(_entropy_kernel, starts, emit_from, shift, ts_ns, window_ns, x, scales, out, computed=columns)
    return out


def pearson(a, b, lag: int, ts_ns: np.ndarray, starts: np.ndarray, window_ns: int,
            emit_from: np.ndarray | None = None, state: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Pearson's r of the pairs (a[p, i − lag], b[p, i]) over each row's window, for each series p.

    A pair needs both values (NaN = missing) and its two rows less than w apart. r is
    clipped to [−1, 1]; 0 when either side is constant (variance at most ``_FLAT`` times
    its mean square); NaN in warm-up (fewer than ``MIN_SAMPLES`` pairs).

    state: a stream's (hosts, series, ``PEARSON_STATE``) array, zeros for a host without one: read where it
    holds the sums of emit's block up to the row before emit (which then need not be summed again), and
    written at each host's last row (the kernel resumes from it at the next call).
    """
    a, b = np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(b, dtype=np.float64)
    emit_from, shift, columns = output_columns(starts, emit_from)
    out = np.empty((len(b), columns))
    state = np.zeros((0, len(b), PEARSON_STATE)) if state is None else state
    if state.shape[1:] != (len(b), PEARSON_STATE) or not state.flags.c_contiguous:
        raise ValueError(f"the Pearson state must be a C-ordered (hosts, {len(b)}, {PEARSON_STATE}) array")
    by_hosts(_pearson_kernel, starts, emit_from, shift, ts_ns, window_ns, a, b, lag, state, out, computed=columns)
    return out


@njit
def _window_starts(ts_ns, window_ns):
    """For each row of one host, the index of its oldest row in (t − w, t]."""
    lo = np.empty(len(ts_ns), dtype=np.int64)
    _fill_window_starts(ts_ns, window_ns, lo)
    return lo


@njit
def _fill_window_starts(ts_ns, window_ns, lo):
    """lo[i] = ``_window_starts``'s, into lo."""
    oldest = 0
    for i in range(len(ts_ns)):
        while ts_ns[oldest] <= ts_ns[i] - window_ns:
            oldest += 1
        lo[i] = oldest


@njit
def _entropy_kernel(first, last, starts, emit_from, shift, ts_ns, window_ns, x, scales, out):
    for s in range(first, last):
        start, end = starts[s], starts[s + 1]
        if emit_from[s] == end:
            continue
        # The rows the outputs read: the first emitted row's window, and the 3k - 1 samples before its oldest
        # pattern (a stream's kept rows reach further back, for the Pearson windows).
        oldest = emit_from[s]
        while oldest > start and ts_ns[oldest - 1] > ts_ns[emit_from[s]] - window_ns:
            oldest -= 1
        start = max(start, oldest - 3 * scales.max() + 1)
        ts, emit = ts_ns[start:end], emit_from[s] - start
        lo = _window_starts(ts, window_ns)
        table = x_log_x(_most_rows(lo))
        y, code = np.empty(len(ts)), np.empty(len(ts), dtype=np.uint8)
        for m in range(len(x)):
            for j, k in enumerate(scales):
                _trailing_mean(x[m, start:end], k, y)
                _ordinal_patterns(y, k, ts, window_ns, code)
                _slide_entropy(code, lo, emit, table, out[m * len(scales) + j], start + shift[s])


@njit
def _most_rows(lo):
    """The most rows any window holds, from each row's oldest row lo."""
    most = 0
    for i in range(len(lo)):
        most = max(most, i - lo[i] + 1)
    return most


@njit
def x_log_x(n):
    """c ln c for every count c up to n (0 for c = 0)."""
    c = np.arange(n + 1).astype(np.float64)
    return c * np.log(np.maximum(c, 1.0))


@njit
def _trailing_mean(x, k, y):
    """y[i] = the mean of the k rows of x ending at row i, summed from x[i] back (NaN for the first k − 1)."""
    y[:] = x
    for lag in range(1, k):  # one pass per lag, y[i] += x[i − lag], on shifted views (so it vectorises)
        later, earlier = y[lag:], x[: len(x) - lag]
        for j in range(len(later)):
            later[j] += earlier[j]
    y /= k
    y[: k - 1] = np.nan


@njit
def _ordinal_patterns(y, k, ts_ns, window_ns, code):
    """code[i] = the ``ordinal_code`` of (y[i − 2k], y[i − k], y[i]), formed when their samples lie less than w
    apart."""
    reach = 3 * k - 1  # the oldest sample of y[i − 2k]
    code[:reach] = PATTERNS
    # Views shifted so that row i of each is at index i − reach: the loop then vectorises.
    older, middle, newest, ts_older, ts_newest = y[k - 1 :], y[2 * k - 1 :], y[reach:], ts_ns, ts_ns[reach:]
    for j in range(len(newest)):
        code[reach + j] = ordinal_code(older[j], middle[j], newest[j], ts_newest[j] - ts_older[j] < window_ns)


@njit
def ordinal_code(a, b, c, formed):
    """The rank order (0-5) of (a, b, c), ties counting as "not greater"; ``PATTERNS`` when not formed or when a
    value is not finite."""
    formed = formed & (abs(a) < np.inf) & (abs(b) < np.inf) & (abs(c) < np.inf)
    # With b > a known, (c > b) + (c > a) tells the three orders apart.
    return 3 * (b > a) + (c > b) + (c > a) if formed else PATTERNS


@njit
def entropy_of_counts(counts, x_log_x):
    """(n ln n − Σ c ln c) / (n ln 6) of the counts c of the n patterns (counts[``PATTERNS``], of rows without
    one, left out), clipped to [0, 1]; NaN for n < ``MIN_SAMPLES``. x_log_x: c ln c for c up to n at least."""
    n, spread = 0, 0.0
    for p in range(PATTERNS):
        n, spread = n + counts[p], spread + x_log_x[counts[p]]
    entropy = min(max((x_log_x[n] - spread) / (n * _LOG_PATTERNS), 0.0), 1.0)
    return entropy if n >= MIN_SAMPLES else np.nan


@njit
def _slide_entropy(code, lo, emit, x_log_x, out, shift):
    """out[i + shift] for i ≥ emit: the entropy of the patterns of rows lo[i]..i.

    (Codes and counts are unsigned, as indices: no negative-index wraparound to compute.)
    """
    counts = np.zeros(PATTERNS + 1, dtype=np.uint32)  # the last counts rows without a pattern
    oldest = lo[emit] if emit < len(code) else len(code)
    for i in range(oldest, len(code)):
        counts[code[i]] += 1
        while oldest < lo[i]:
            counts[code[oldest]] -= 1
            oldest += 1
        if i >= emit:
            out[i + shift] = entropy_of_counts(counts, x_log_x)


@njit
def _pearson_kernel(first, last, starts, emit_from, shift, ts_ns, window_ns, a, b, lag, state, out):
    no_state = np.empty(0)  # a batch run's
    # scratch for the longest host, allocated once: an allocation per host cost more than a live row's work
    longest = np.max(starts[first + 1 : last + 1] - starts[first:last])
    lo_all, paired_all = np.empty(longest, dtype=np.int64), np.empty(longest, dtype=np.bool_)
    suffix = np.empty((longest + 1, _SUMS))
    for s in range(first, last):
        start, end = starts[s], starts[s + 1]
        if emit_from[s] == end:
            continue
        # The rows the outputs read: from the window of the first row of emit's block (its reference pair's),
        # each row with the sample lag before it (a stream's kept rows may reach further back).
        block_first, block_ns = emit_from[s], _block_start(ts_ns[emit_from[s]], window_ns)
        while block_first > start and ts_ns[block_first - 1] >= block_ns:
            block_first -= 1
        oldest = block_first
        while oldest > start and ts_ns[oldest - 1] > ts_ns[block_first] - window_ns:
            oldest -= 1
        start = max(start, oldest - lag)
        ts = ts_ns[start:end]
        lo, paired = lo_all[: len(ts)], paired_all[: len(ts)]
        _fill_window_starts(ts, window_ns, lo)
        for p in range(len(b)):
            x, y = a[p, start:end], b[p, start:end]
            _pairs(x, y, lag, ts, window_ns, paired)
            _block_pearson(x, y, lag, paired, ts, window_ns, lo, block_first - start, emit_from[s] - start, suffix,
                           out[p], start + shift[s], state[s, p] if len(state) else no_state)  # fmt: skip


@njit
def _block_start(ts_ns, window_ns):
    """The start of the block of w holding ts_ns (compared with, rather than dividing every row's time: an
    integer division costs as much as the rest of a row's work)."""
    return ts_ns // window_ns * window_ns


@njit
def _pairs(a, b, lag, ts_ns, window_ns, paired):
    """paired[i]: row i has a pair, both values and the earlier row of this host less than w older."""
    paired[:lag] = False
    # Views shifted so that row i of each is at index i − lag: the loop then vectorises.
    earlier, later, ts_earlier, ts_later, out = a, b[lag:], ts_ns, ts_ns[lag:], paired[lag:]
    for j in range(len(out)):
        out[j] = (ts_later[j] - ts_earlier[j] < window_ns) & (abs(earlier[j]) < np.inf) & (abs(later[j]) < np.inf)


@njit
def _block_pearson(a, b, lag, paired, ts_ns, window_ns, lo, block_first, emit, suffix, out, shift, state):
    """out[i + shift] for i ≥ emit: r over rows lo[i]..i, block by block (see the module docstring), from
    block_first, the first row of emit's block; state: ``pearson``'s for this host and series, or empty."""
    i = block_first
    resume = len(state) > 0 and state[_HOLDS] == 1.0 and i < emit  # state: the block up to emit - 1
    while i < len(b):
        first, block_end = i, (ts_ns[i] // window_ns + 1) * window_ns
        if resume:
            reference, ref_a, ref_b = emit - 1 - int(state[_BACK]), state[_REF_A], state[_REF_B]
            sums = _kept_sums(state)
            i, resume = emit, False
        else:
            reference = _newest_pair(paired, lo[first], first)
            ref_a, ref_b = _pair(a, b, lag, reference)
            sums = _NO_PAIRS  # of the block's pairs up to row i
        # the earlier block's part of the windows of rows ≥ emit; no pair there once the reference has left them
        _suffix_sums(a, b, lag, paired, lo[max(first, emit)], first, ref_a, ref_b, suffix)
        while i < len(b) and ts_ns[i] < block_end:
            if reference < lo[i]:  # the window has left the reference: its pairs all lie in the block
                reference = _oldest_pair(paired, first)
                ref_a, ref_b = _pair(a, b, lag, reference)
                sums = _sums(a, b, lag, paired, first, i, ref_a, ref_b)
            if paired[i]:
                sums = _add_pair(sums, a[i - lag] - ref_a, b[i] - ref_b)
            if i >= emit:  # plus the pairs of the earlier block in the window (its oldest row is at most first)
                j = lo[i]
                older = (suffix[j, 0], suffix[j, 1], suffix[j, 2], suffix[j, 3], suffix[j, 4], suffix[j, 5])
                out[i + shift] = _r(sums, older, ref_a, ref_b)
            i += 1
    if len(state):
        _keep_sums(state, len(b) - 1 - reference, ref_a, ref_b, sums, 0 <= reference < len(b))


@njit
def _kept_sums(state):
    k = _BLOCK_SUMS
    return (state[k], state[k + 1], state[k + 2], state[k + 3], state[k + 4], state[k + 5])


@njit
def _keep_sums(state, back, ref_a, ref_b, sums, holds):
    """The state at a host's last row. It does not hold while the reference is a pair yet to come (a window
    without pairs): a batch run would pick one of the rows after, a stream cannot."""
    state[_HOLDS], state[_BACK], state[_REF_A], state[_REF_B] = 1.0 if holds else 0.0, back, ref_a, ref_b
    k = _BLOCK_SUMS  # index by index: a loop indexing the tuple at run time costs more than a row's sums
    state[k], state[k + 1], state[k + 2], state[k + 3], state[k + 4], state[k + 5] = sums


@njit
def _newest_pair(paired, oldest, row):
    """The newest row of oldest..row with a pair; −1 if none."""
    for i in range(row, oldest - 1, -1):
        if paired[i]:
            return i
    return -1


@njit
def _oldest_pair(paired, row):
    """The oldest row from row on with a pair; len(paired) if none (then no later sum holds a pair)."""
    for i in range(row, len(paired)):
        if paired[i]:
            return i
    return len(paired)


@njit
def _pair(a, b, lag, row):
    """The pair of row, or (0, 0) when there is none (the sums it would be the reference of are empty)."""
    return (a[row - lag], b[row]) if 0 <= row < len(b) else (0.0, 0.0)


@njit
def _sums(a, b, lag, paired, first, end, ref_a, ref_b):
    """The sums of the pairs of rows first..end − 1, as deviations from (ref_a, ref_b)."""
    sums = _NO_PAIRS
    for i in range(first, end):
        if paired[i]:
            sums = _add_pair(sums, a[i - lag] - ref_a, b[i] - ref_b)
    return sums


@njit
def _suffix_sums(a, b, lag, paired, oldest, end, ref_a, ref_b, suffix):
    """suffix[j] = the sums of the pairs of rows j..end − 1 (as ``_sums``), for j from oldest to end."""
    sums = _NO_PAIRS
    suffix[end] = 0.0
    for j in range(end - 1, oldest - 1, -1):
        if paired[j]:
            sums = _add_pair(sums, a[j - lag] - ref_a, b[j] - ref_b)
        suffix[j, 0], suffix[j, 1], suffix[j, 2], suffix[j, 3], suffix[j, 4], suffix[j, 5] = sums


@njit
def _add_pair(sums, da, db):
    """sums (n, Σa, Σb, Σa², Σb², Σab) with the pair of deviations (da, db) added."""
    n, sa, sb, saa, sbb, sab = sums
    return n + 1.0, sa + da, sb + db, saa + da * da, sbb + db * db, sab + da * db


@njit
def _r(sums, older, ref_a, ref_b):
    """Pearson's r from a window's sums of deviations from (ref_a, ref_b), in two parts."""
    n, sa, sb = sums[0] + older[0], sums[1] + older[1], sums[2] + older[2]
    saa, sbb, sab = sums[3] + older[3], sums[4] + older[4], sums[5] + older[5]
    if n < MIN_SAMPLES:
        return np.nan
    cov, var_a, var_b = n * sab - sa * sb, n * saa - sa * sa, n * sbb - sb * sb
    # Constant: compared with n Σa² of the values themselves, var_a + (Σa)², where Σa = n ref_a + Σ(a − ref_a).
    if var_a <= _FLAT * (var_a + (n * ref_a + sa) ** 2) or var_b <= _FLAT * (var_b + (n * ref_b + sb) ** 2):
        return 0.0
    return min(max(cov / math.sqrt(var_a * var_b), -1.0), 1.0)
