"""Helpers shared by the packs: settings checks, the frame's row spacing, per-host rolling windows.

Windows run on ``HOST_TIME`` (see ``features.with_host_time``), with hosts a day apart,
so a pack's windows must be shorter than a day.
"""

from __future__ import annotations

import polars as pl

from amoskys.errors import ConfigError
from amoskys.pipeline.features import HOST_SECONDS, HOST_TIME, same_host, seconds, with_host_time

HOST_GAP_S = 86_400.0  # between two hosts on HOST_TIME; a pack's window must be shorter


def check_settings(pack: str, raw: dict, spec: dict[str, tuple[type, object]]) -> dict:
    """A ``[packs.NAME]`` table checked against spec (key -> (type, default)), defaults filled in.

    A default of None makes a key optional. Checking checked settings again returns them unchanged.

    >>> check_settings("demo", {"low": 1}, {"low": (float, 0.0), "tags": (list, [])})
    {'low': 1.0, 'tags': []}
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"packs.{pack} must be a table")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise ConfigError(f"unknown key packs.{pack}.{unknown[0]} (known: {', '.join(spec) or 'none'})")
    checked = {}
    for key, (kind, default) in spec.items():
        value = raw.get(key, default)
        # None (TOML has none) only comes back from settings checked before, for an unset optional key.
        if value is not None or default is not None:
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
                raise ConfigError(f"packs.{pack}.{key} must be {kind.__name__}, not {type(value).__name__} {value!r}")
        checked[key] = list(value) if isinstance(value, list) else value
    return checked


def interval_ns(frame: pl.DataFrame, pack: str, configured: float | None) -> int:
    """The row spacing: configured, else the shortest step between a host's rows (gaps only lengthen steps)."""
    if configured is not None:
        return round(configured * 1e9)
    steps = frame.select(step=pl.when(same_host()).then(pl.col("ts").diff().dt.total_nanoseconds()))
    steps = steps.filter(pl.col("step") > 0)
    if steps.height == 0:
        raise ConfigError(f"packs.{pack}.interval_seconds: no host has two rows to derive it from; set it")
    return int(steps["step"].min())


def add_on_host_time(frame: pl.DataFrame, columns: list[pl.Expr]) -> pl.DataFrame:
    """frame (sorted by host, then ts) with the columns added, computed in one parallel pass; they may use
    ``HOST_TIME`` and ``HOST_SECONDS``, which are not returned."""
    return with_host_time(frame, HOST_GAP_S).with_columns(columns).drop(HOST_TIME, HOST_SECONDS)


def roll(expr: pl.Expr, how: str, window_s: float, closed: str = "right") -> pl.Expr:
    """A per-host rolling aggregate over the last window_s seconds (closed="left" leaves the row out); for
    ``add_on_host_time``."""
    if window_s >= HOST_GAP_S:
        raise ValueError(f"a {window_s} s window would reach across hosts on {HOST_TIME}")
    return getattr(expr, f"rolling_{how}_by")(HOST_TIME, seconds(window_s), closed=closed)


def slope_per_s(y: pl.Expr, window_s: float) -> pl.Expr:
    """Least-squares slope of y against time over the last window_s seconds, per second; null below 2 samples;
    for ``add_on_host_time``."""
    t = pl.col(HOST_SECONDS)  # small t: no cancellation
    mean_t, mean_y = roll(t, "mean", window_s), roll(y, "mean", window_s)
    var_t = roll(t * t, "mean", window_s) - mean_t * mean_t
    cov = roll(t * y, "mean", window_s) - mean_t * mean_y
    # A single sample has var_t 0 up to rounding; two samples 2 s apart already give 1 s².
    return pl.when(var_t >= 1.0).then(cov / var_t)
