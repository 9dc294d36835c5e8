"""Stage 2, temporal: per-host statistics of key metrics over recent time windows.

For each key metric x, at each row (host h, time t), over each window w of
``windows_seconds`` — counted in time, never in rows, and always within host h, so a
gap dropped by stage 1 shortens the window instead of reaching across it:

- ``mean``, ``std``, ``min``, ``max`` of the samples in (t − w, t]. ``std`` is the
  population standard deviation (ddof 0): the window is the whole set described, not a
  sample of a larger one.
- ``volatility``: coefficient of variation std / |mean|; null when the mean is 0.
- ``slope``: least-squares slope of x against time over (t − w, t], per second:
  (mean(u·x) − mean(u)·mean(x)) / (mean(u²) − mean(u)²), u the time in seconds.
- ``roc`` (rate of change): (x(t) − x(t₀)) / w, t₀ the oldest sample in [t − w, t].
  On the regular grid with a window of history, t₀ = t − w: the change over one window,
  per second. With less history (host start, after a gap) it is the change seen so far,
  still per second of window, so a short history never inflates it.

A window holding a single sample (a host's first row, the first row after a gap) shows
no variation: its std, slope and roc are 0, never null (volatility too, unless the value
is 0). For each half-life h
of ``ewm_half_lives_seconds``, ``ewm`` is the mean with weights that halve every h
seconds of time (not every h rows).

Every feature is streamable: a live detector keeps, per host, the samples of the last
max(w) seconds (running sums of u, x, u·x and u², the oldest sample, a min/max deque)
and one running value per half-life.

Each expression is evaluated by itself (``apply`` runs one eager ``with_columns``), so
each is kept to one ``over`` and evaluates every rolling aggregate once.
"""

from __future__ import annotations

import polars as pl

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.features import TEMPORAL, Feature, FeatureDef, seconds

# The signature metric of each kind of trouble: crypto miner, memory leak, disk thrash,
# fork storm, exfiltration, port scan. Stage 1 fills them, so they are never null.
KEY_METRICS = (
    "cpu_busy_pct",
    "mem_used_bytes",
    "disk_busy_pct",
    "process_count",
    "net_tx_bytes_per_s",
    "tcp_attempt_fails_per_s",
)


def temporal_defs(config: PipelineConfig) -> list[FeatureDef]:
    """Stage-2 definitions: 7 statistics per key metric and window, and an EWM per half-life
    (declared with the half-life as its window)."""
    units = {f.name: f.unit for f in canonical_features()}
    defs = []
    for metric in KEY_METRICS:
        for window_s in config.windows_seconds:
            defs += _window_defs(metric, units[metric], window_s)
        for half_life_s in config.ewm_half_lives_seconds:
            h = seconds(half_life_s)
            description = f"Exponentially weighted mean of {metric} on this host, weights halving every {h} of time."
            expr = pl.col(metric).ewm_mean_by("ts", half_life=h).over("host")
            defs.append(_def(f"{metric}_ewm_{h}", units[metric], description, metric, h, expr))
    return defs


def _window_defs(metric: str, unit: str, window_s: float) -> list[FeatureDef]:
    x, w = pl.col(metric), seconds(window_s)
    span = f"over the last {w} of this host"
    stats = [
        ("mean", unit, f"Mean of {metric} {span}.", _mean(x, w)),
        ("std", unit, f"Population standard deviation of {metric} {span} (0 for a single sample).", _std(x, w)),
        ("min", unit, f"Lowest {metric} {span}.", x.rolling_min_by("ts", w)),
        ("max", unit, f"Highest {metric} {span}.", x.rolling_max_by("ts", w)),
        ("roc", _per_second(unit), f"Change of {metric} since its oldest sample {span} (one full window ago "
                                   f"on a regular grid), divided by {w}.", _roc(x, w, window_s)),
        ("slope", _per_second(unit), f"Least-squares slope of {metric} against time {span}, per second "
                                     "(0 for a single sample).", _slope(x, w)),
        ("volatility", "ratio", f"Coefficient of variation (std / |mean|) of {metric} {span}; null when the "
                                "mean is 0.", _std(x, w) / _nonzero(_mean(x, w).abs())),
    ]  # fmt: skip
    # One ``over`` per feature, around the whole expression: an ``over`` nested inside
    # arithmetic costs Polars another pass over the groups.
    return [_def(f"{metric}_{stat}_{w}", u, d, metric, w, expr.over("host")) for stat, u, d, expr in stats]


def _def(name: str, unit: str, description: str, metric: str, window: str, expr: pl.Expr) -> FeatureDef:
    return FeatureDef(Feature(name, TEMPORAL, unit, description, (metric,), window=window), expr)


def _per_second(unit: str) -> str:
    """The unit of a change per second: percent -> percent/s, bytes/s -> bytes/s²."""
    return unit.removesuffix("/s") + "/s²" if unit.endswith("/s") else unit + "/s"


def _nonzero(expr: pl.Expr) -> pl.Expr:
    """expr with 0 as null, so dividing by it gives null, not inf. (Unlike ``safe_ratio``,
    it names the denominator once: without common-subexpression elimination a rolling
    denominator named twice would be computed twice.)"""
    return expr.replace(0.0, None)


def _mean(x: pl.Expr, w: str) -> pl.Expr:
    return x.rolling_mean_by("ts", w)


def _std(x: pl.Expr, w: str) -> pl.Expr:
    return x.rolling_std_by("ts", w, ddof=0)


def _slope(x: pl.Expr, w: str) -> pl.Expr:
    # A slope does not change when time or values shift by a constant: measuring both from
    # the host's first sample keeps u·y small, so mean(u·y) - mean(u)·mean(y) keeps its
    # precision on long histories and large gauges (bytes); a live detector may use any origin.
    u = (pl.col("ts") - pl.col("ts").first()).dt.total_nanoseconds() * 1e-9
    y = x - x.first()
    cov = _mean(u * y, w) - _mean(u, w) * _mean(y, w)
    # var(u) = mean(u²) - mean(u)², from Polars' rolling variance: exactly 0 for one sample.
    return (cov / _nonzero(u.rolling_var_by("ts", w, ddof=0))).fill_null(0.0)


def _roc(x: pl.Expr, w: str, window_s: float) -> pl.Expr:
    oldest = pl.int_range(pl.len()).rolling_min_by("ts", w, closed="both")
    return (x - x.gather(oldest)) / window_s
