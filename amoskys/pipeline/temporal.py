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

Windows run on ``HOST_TIME``, a time axis on which each host follows the previous one
after a gap longer than any window or decay: one rolling pass over the whole column
then never mixes hosts, and costs half of a pass per host (``over("host")``).
"""

from __future__ import annotations

import polars as pl

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.features import HOST_SECONDS, HOST_TIME, TEMPORAL, Feature, FeatureDef, apply, seconds, with_host_time

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


def temporal_features(frame: pl.DataFrame, config: PipelineConfig) -> pl.DataFrame:
    """frame (sorted by host, then ts) with every stage-2 feature added."""
    defs = temporal_defs(config)
    keyed = _keyed(frame, config)
    # Volatility divides two other features: it is computed from their columns, after them.
    first = [d for d in defs if _VOLATILITY not in d.feature.name]
    then = [d for d in defs if _VOLATILITY in d.feature.name]
    return apply(apply(keyed, first), then).select(*frame.columns, *(d.feature.name for d in defs))


def _keyed(frame: pl.DataFrame, config: PipelineConfig) -> pl.DataFrame:
    """frame on the host-time axis, plus, per window, what does not depend on the metric (the
    mean and variance of time in the window, for slopes; the row of the window's oldest
    sample, for rates of change), computed once for all metrics.

    Hosts sit a day apart on the axis, or more: beyond every window, and 1100 half-lives
    beyond each EWM, where the previous host's weight, 2**-1100, is exactly 0 in float64:
    each host's averages start afresh, exactly.
    """
    longest_window, longest_half_life = max(config.windows_seconds, default=0.0), max(config.ewm_half_lives_seconds, default=0.0)
    gap_s = max(86_400.0, 2 * longest_window, 1100 * longest_half_life)
    keyed = with_host_time(frame, gap_s)
    u = pl.col(HOST_SECONDS)
    per_window = []
    for window_s in config.windows_seconds:
        w = seconds(window_s)
        per_window += [
            u.rolling_mean_by(HOST_TIME, w).alias(_u_mean(w)),
            # var(u) = mean(u²) - mean(u)², from Polars' rolling variance: exactly 0 for one sample.
            u.rolling_var_by(HOST_TIME, w, ddof=0).alias(_u_var(w)),
            pl.int_range(pl.len()).rolling_min_by(HOST_TIME, w, closed="both").alias(_oldest(w)),
        ]
    return keyed.with_columns(per_window)


_VOLATILITY = "_volatility_"


def _u_mean(w: str) -> str:
    return f"_u_mean_{w}"


def _u_var(w: str) -> str:
    return f"_u_var_{w}"


def _oldest(w: str) -> str:
    return f"_oldest_{w}"


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
            expr = pl.col(metric).ewm_mean_by(HOST_TIME, half_life=h)
            defs.append(_def(f"{metric}_ewm_{h}", units[metric], description, metric, h, expr))
    return defs


def _window_defs(metric: str, unit: str, window_s: float) -> list[FeatureDef]:
    x, w = pl.col(metric), seconds(window_s)
    span = f"over the last {w} of this host"
    stats = [
        ("mean", unit, f"Mean of {metric} {span}.", _mean(x, w)),
        ("std", unit, f"Population standard deviation of {metric} {span} (0 for a single sample).", _std(x, w)),
        ("min", unit, f"Lowest {metric} {span}.", x.rolling_min_by(HOST_TIME, w)),
        ("max", unit, f"Highest {metric} {span}.", x.rolling_max_by(HOST_TIME, w)),
        ("roc", _per_second(unit), f"Change of {metric} since its oldest sample {span} (one full window ago "
                                   f"on a regular grid), divided by {w}.", _roc(x, w, window_s)),
        ("slope", _per_second(unit), f"Least-squares slope of {metric} against time {span}, per second "
                                     "(0 for a single sample).", _slope(x, w)),
        ("volatility", "ratio", f"Coefficient of variation (std / |mean|) of {metric} {span}; null when the "
                                "mean is 0.", pl.col(f"{metric}_std_{w}") / _nonzero(pl.col(f"{metric}_mean_{w}").abs())),
    ]  # fmt: skip
    return [_def(f"{metric}_{stat}_{w}", u, d, metric, w, expr) for stat, u, d, expr in stats]


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
    return x.rolling_mean_by(HOST_TIME, w)


def _std(x: pl.Expr, w: str) -> pl.Expr:
    return x.rolling_std_by(HOST_TIME, w, ddof=0)


def _slope(x: pl.Expr, w: str) -> pl.Expr:
    # A slope does not change when time or values shift by a constant: measuring both from
    # the host's first sample keeps u·y small, so mean(u·y) - mean(u)·mean(y) keeps its
    # precision on long histories and large gauges (bytes); a live detector may use any origin.
    u = pl.col(HOST_SECONDS)
    y = x - x.first().over("host")
    cov = _mean(u * y, w) - pl.col(_u_mean(w)) * _mean(y, w)
    return (cov / _nonzero(pl.col(_u_var(w)))).fill_null(0.0)


def _roc(x: pl.Expr, w: str, window_s: float) -> pl.Expr:
    return (x - x.gather(pl.col(_oldest(w)))) / window_s
