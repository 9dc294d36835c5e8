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

Every feature is streamable: one compiled kernel (``temporal_kernel``) computes them all,
for the batch pipeline and for a live detector, which keeps per host the samples of the
last max(w) seconds (both ends included) and the EWMs of its last row, and passes them
with its new rows: it gets the batch's values, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import canonical_features
from amoskys.pipeline.features import TEMPORAL, Feature, seconds
from amoskys.pipeline.jit import segments
from amoskys.pipeline.temporal_kernel import STATS, temporal_arrays

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


@dataclass(frozen=True)
class TemporalDef:
    """A stage-2 declaration and the statistic the kernel computes for it ("mean", ..., "ewm")."""

    feature: Feature
    stat: str


def temporal_features(frame: pl.DataFrame, config: PipelineConfig) -> pl.DataFrame:
    """frame (sorted by host, then ts) with every stage-2 feature added, in declared order."""
    defs = temporal_defs(config)
    nulls = frame.select(pl.col(KEY_METRICS).null_count()).row(0)
    if any(nulls):  # stage 1 fills the key metrics: a null here is a bug upstream, not data
        raise ValueError(f"null key metrics in stage 2's input: {dict(zip(KEY_METRICS, nulls))}")
    ts_ns = frame["ts"].dt.epoch("ns").to_numpy()
    x = [frame[metric].cast(pl.Float64).to_numpy() for metric in KEY_METRICS]  # no copy: views of the columns
    per_metric = temporal_arrays(ts_ns, x, segments(frame["host"]), config.windows_seconds,
                                 config.ewm_half_lives_seconds)  # fmt: skip
    values = [row for metric in per_metric for row in metric]  # declared order: metric-major, as the kernel's
    # the kernel's NaN, a volatility over a zero mean (nothing else can be NaN), is a null in the frame
    columns = [pl.Series(d.feature.name, column, nan_to_null=d.stat == "volatility") for d, column in zip(defs, values)]
    return frame.hstack(columns)


def temporal_defs(config: PipelineConfig) -> list[TemporalDef]:
    """Stage-2 definitions, in the kernel's output order: 7 statistics per key metric and
    window, and an EWM per half-life (declared with the half-life as its window)."""
    units = {f.name: f.unit for f in canonical_features()}
    defs = []
    for metric in KEY_METRICS:
        for window_s in config.windows_seconds:
            defs += _window_defs(metric, units[metric], window_s)
        for half_life_s in config.ewm_half_lives_seconds:
            h = seconds(half_life_s)
            description = f"Exponentially weighted mean of {metric} on this host, weights halving every {h} of time."
            defs.append(_def(f"{metric}_ewm_{h}", units[metric], description, metric, h, "ewm"))
    return defs


def _window_defs(metric: str, unit: str, window_s: float) -> list[TemporalDef]:
    w = seconds(window_s)
    span = f"over the last {w} of this host"
    declared = {  # stat: (unit, description), one per kernel statistic
        "mean": (unit, f"Mean of {metric} {span}."),
        "std": (unit, f"Population standard deviation of {metric} {span} (0 for a single sample)."),
        "min": (unit, f"Lowest {metric} {span}."),
        "max": (unit, f"Highest {metric} {span}."),
        "roc": (_per_second(unit), f"Change of {metric} since its oldest sample {span} (one full window ago "
                                   f"on a regular grid), divided by {w}."),
        "slope": (_per_second(unit), f"Least-squares slope of {metric} against time {span}, per second "
                                     "(0 for a single sample)."),
        "volatility": ("ratio", f"Coefficient of variation (std / |mean|) of {metric} {span}; null when the "
                                "mean is 0."),
    }  # fmt: skip
    return [_def(f"{metric}_{stat}_{w}", *declared[stat], metric, w, stat) for stat in STATS]


def _def(name: str, unit: str, description: str, metric: str, window: str, stat: str) -> TemporalDef:
    return TemporalDef(Feature(name, TEMPORAL, unit, description, (metric,), window=window), stat)


def _per_second(unit: str) -> str:
    """The unit of a change per second: percent -> percent/s, bytes/s -> bytes/s²."""
    return unit.removesuffix("/s") + "/s²" if unit.endswith("/s") else unit + "/s"
