"""Stage 5's windowed statistics over (t − w, t] of one host: ordinal-pattern entropy and Pearson's r.

Rows are sorted by host then time. A pair or pattern belongs to the row of its newest
sample and counts in every window holding that row; it is formed only from samples of
the same host less than w apart (``lag_ok``), so nothing spans a host change or a gap.

Pattern counts are integers: their window sums come exactly from cumulative sums.
Correlations need window sums of floats, where a cumulative sum would carry the rounding
error of one huge value into every later window; those use Polars' rolling sums on the
host-time axis, which do not.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from amoskys.pipeline.features import HOST_TIME

MIN_SAMPLES = 5  # fewer pairs or patterns in a window: warm-up, null
_FLAT = 1e-10  # a window whose variance is below this share of its mean square is constant
_PATTERNS = 6  # order-3 ordinal patterns


def window_starts(host: np.ndarray, ts_ns: np.ndarray, window_ns: int) -> np.ndarray:
    """For each row, the index of the oldest row of its host in (t − w, t]."""
    changes = np.flatnonzero(host[1:] != host[:-1]) + 1
    starts = np.empty(len(host), dtype=np.intp)
    for first, end in zip([0, *changes], [*changes, len(host)]):
        segment = ts_ns[first:end]
        starts[first:end] = first + np.searchsorted(segment, segment - window_ns, side="right")
    return starts


def lag_ok(host: np.ndarray, ts_ns: np.ndarray, lag: int, window_ns: int) -> np.ndarray:
    """True where the sample lag rows back is of the same host and less than w older."""
    ok = np.zeros(len(host), dtype=bool)
    ok[lag:] = (host[lag:] == host[:-lag]) & (ts_ns[lag:] - ts_ns[:-lag] < window_ns)
    return ok


def pattern_entropy(x: np.ndarray, k: int, ok: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Normalised order-3 permutation entropy of x averaged over k samples, per window; NaN in warm-up.

    A row's pattern is the rank order of (y[i − 2k], y[i − k], y[i]), y the mean of the
    k samples ending at each row; ok says the oldest sample used (3k − 1 rows back) may
    be used. Entropy is (n ln n − Σ c ln c) / (n ln 6) over the pattern counts c of the
    window, exactly 0 when one pattern fills it.
    """
    y = _trailing_mean(x, k)
    a, b, c = _shift(y, 2 * k), _shift(y, k), y
    valid = ok & np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
    # With b > a known, (c > b) + (c > a) tells the three orders apart (ties count as "not greater").
    code = 3 * (b > a) + (c > b).astype(np.int8) + (c > a)
    counts = [_window_count(valid & (code == pattern), starts) for pattern in range(_PATTERNS)]
    n = sum(counts)
    values = np.arange(n.max(initial=0) + 1, dtype=np.float64)
    x_log_x = values * np.log(np.maximum(values, 1.0))
    spread = x_log_x[n] - sum(x_log_x[count] for count in counts)
    entropy = np.clip(spread / (np.maximum(n, 1) * math.log(_PATTERNS)), 0.0, 1.0)
    return np.where(n >= MIN_SAMPLES, entropy, np.nan)


def pearson_sums(name: str, a: pl.Expr, b: pl.Expr, ok: pl.Expr, window: str) -> list[pl.Expr]:
    """Window sums of the pairs (a, b) where both exist and ok holds: count, sums, cross and squared sums."""
    valid = a.is_not_null() & b.is_not_null() & ok.fill_null(False)
    a, b = pl.when(valid).then(a).otherwise(0.0), pl.when(valid).then(b).otherwise(0.0)
    terms = {"n": valid.cast(pl.Float64), "a": a, "b": b, "ab": a * b, "aa": a * a, "bb": b * b}
    return [term.rolling_sum_by(HOST_TIME, window).alias(f"{name}:{t}") for t, term in terms.items()]


def pearson(name: str) -> pl.Expr:
    """Pearson's r from the sums of ``pearson_sums``; 0 for a constant window, null in warm-up."""
    n, a, b, ab, aa, bb = (pl.col(f"{name}:{t}") for t in ("n", "a", "b", "ab", "aa", "bb"))
    cov, var_a, var_b = n * ab - a * b, n * aa - a * a, n * bb - b * b
    flat = (var_a <= _FLAT * n * aa) | (var_b <= _FLAT * n * bb)
    r = (cov / (var_a * var_b).sqrt()).clip(-1.0, 1.0)
    return pl.when(n < MIN_SAMPLES).then(None).when(flat).then(0.0).otherwise(r)


def _window_count(flags: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many rows of each window have flags set (exact: integer cumulative sums)."""
    total = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=total[1:])
    return total[1:] - total[starts]


def _trailing_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Mean of the k rows ending at each row (NaN for the first k − 1); x itself for k = 1."""
    if k == 1:
        return x
    total = x.copy()
    for lag in range(1, k):
        total += _shift(x, lag)
    return total / k


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[lag:] = x[:-lag]
    return out
