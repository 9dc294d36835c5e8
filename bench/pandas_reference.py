"""Stages 1-2 written the way a plain pandas script would: the reference bench/pipeline.py compares against.

Same inputs and outputs as amoskys's stages 1-2 (bucketing, counter rates with resets,
forward fill up to max_fill, then the temporal features of temporal.KEY_METRICS), with
pandas' own groupby/rolling/ewm. It is not used by amoskys itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from amoskys.config import PipelineConfig
from amoskys.pipeline.canonical import COUNTERS, GAUGES, rate_name
from amoskys.pipeline.temporal import KEY_METRICS


def pandas_stages_1_2(snapshots: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    step = int(config.interval_seconds * 1e9)
    gauges = [m.name for m in GAUGES if m.name in snapshots]
    counters = [m.name for m in COUNTERS if m.name in snapshots]
    frame = snapshots.assign(bucket=snapshots["ts_ns"] // step * step).sort_values(["host", "ts_ns"])
    buckets = frame.groupby(["host", "bucket"], sort=True)[gauges + counters].last().reset_index()

    per_host = []
    for host, rows in buckets.groupby("host", sort=True):
        rows = rows.set_index("bucket")
        seconds = np.diff(rows.index.to_numpy(), prepend=np.nan) / 1e9
        out = rows[gauges].copy()
        for name in counters:
            delta = rows[name].diff()
            delta = delta.where(delta >= 0, rows[name])  # a reset: counting from 0 again
            out[rate_name(name)] = delta / seconds
        out["cpu_busy_pct"] = 100.0 - out["cpu_idle_pct"]
        out = out.iloc[1:]
        grid = np.arange(out.index[0], out.index[-1] + step, step)
        out = out.reindex(grid).ffill(limit=int(config.max_fill_seconds * 1e9 // step)).dropna(how="all")
        out.insert(0, "host", host)
        per_host.append(out)
    canonical = pd.concat(per_host).rename_axis("bucket").reset_index()
    canonical["ts"] = pd.to_datetime(canonical["bucket"], unit="ns", utc=True)
    return _temporal(canonical, config)


def _temporal(canonical: pd.DataFrame, config: PipelineConfig) -> pd.DataFrame:
    features = {}
    for host, rows in canonical.groupby("host", sort=True):
        rows = rows.set_index("ts")
        seconds = (rows.index - rows.index[0]).total_seconds().to_numpy()
        columns = {}
        for metric in KEY_METRICS:
            x = rows[metric]
            u = pd.Series(seconds, index=rows.index)
            y = x - x.iloc[0]
            for window_s in config.windows_seconds:
                w = f"{int(window_s)}s"
                roll = x.rolling(w)
                mean, std = roll.mean(), roll.std(ddof=0)
                columns[f"{metric}_mean_{w}"] = mean
                columns[f"{metric}_std_{w}"] = std
                columns[f"{metric}_min_{w}"] = roll.min()
                columns[f"{metric}_max_{w}"] = roll.max()
                # the value one window ago (on the regular grid, the window's oldest sample)
                ago = x.shift(freq=pd.Timedelta(seconds=window_s)).reindex(x.index)
                columns[f"{metric}_roc_{w}"] = (x - ago) / window_s
                cov = (u * y).rolling(w).mean() - u.rolling(w).mean() * y.rolling(w).mean()
                columns[f"{metric}_slope_{w}"] = (cov / u.rolling(w).var(ddof=0).replace(0.0, np.nan)).fillna(0.0)
                columns[f"{metric}_volatility_{w}"] = std / mean.abs().replace(0.0, np.nan)
            for half_life_s in config.ewm_half_lives_seconds:
                columns[f"{metric}_ewm_{int(half_life_s)}s"] = x.ewm(
                    halflife=pd.Timedelta(seconds=half_life_s), times=rows.index
                ).mean()
        features[host] = pd.concat([rows.reset_index(), pd.DataFrame(columns).reset_index(drop=True)], axis=1)
    return pd.concat(features.values(), ignore_index=True)
