"""Feature declarations: every column the pipeline emits is declared once, here or in a pack.

A declaration names the feature, its stage, unit, description, inputs, window and
pack, and says whether a live detector can compute it incrementally, event by event
(``streamable``). ``feature_metadata.json`` is generated from these declarations, and
a test fails on any output column that has none.

A ``FeatureDef`` pairs a declaration with the Polars expression that computes it on
a frame sorted by host and time; expressions that look back in time must do so per
host (``.over("host")``) and by time, never by row count.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import polars as pl

CANONICAL, TEMPORAL, CROSS, DOMAIN, ANOMALY = 1, 2, 3, 4, 5
STAGE_NAMES = {CANONICAL: "canonical", TEMPORAL: "temporal", CROSS: "cross_feature", DOMAIN: "domain_pack",
               ANOMALY: "anomaly_aware"}  # fmt: skip

# Columns every frame carries that are keys or labels, not features.
KEY_COLUMNS = ("host", "ts")
LABEL_COLUMNS = ("label", "incident")


@dataclass(frozen=True)
class Feature:
    name: str
    stage: int
    unit: str
    description: str
    inputs: tuple[str, ...]
    window: str | None = None  # e.g. "60s"; None when the value needs no history
    pack: str | None = None  # the domain pack that declares it, if any
    streamable: bool = True  # False: batch-only; stream models are trained without it
    dtype: str = "float64"

    def as_dict(self) -> dict:
        return {**asdict(self), "inputs": list(self.inputs), "stage_name": STAGE_NAMES[self.stage]}


@dataclass(frozen=True)
class FeatureDef:
    feature: Feature
    expr: pl.Expr  # computes the feature; aliased to feature.name when applied


HOST_TIME = "_host_time"
HOST_SECONDS = "_host_seconds"  # time since the host's first row: keeps sums of time small


def same_host() -> pl.Expr:
    """True where the row follows a row of the same host (in a frame sorted by host): a shift
    that must not cross hosts is masked with it, which is far cheaper than ``over("host")``."""
    return (pl.col("host") == pl.col("host").shift(1)).fill_null(False)


def with_host_time(frame: pl.DataFrame, gap_s: float) -> pl.DataFrame:
    """frame (sorted by host, then ts) with ``HOST_TIME`` and ``HOST_SECONDS``.

    ``HOST_TIME`` is one time axis on which each host follows the previous one after
    ``gap_s``, with the exact steps between a host's rows: a rolling window shorter than
    the gap, run over the whole column, never mixes hosts and holds the same rows as it
    would per host, at about half the cost of ``over("host")``. Microseconds, so that
    even a large fleet's axis stays far from overflowing.
    """
    first = ~same_host()
    step_us = pl.when(first).then(round(gap_s * 1e6)).otherwise(pl.col("ts").diff().dt.total_microseconds())
    axis = step_us.cum_sum().cast(pl.Datetime("us")).set_sorted()
    return frame.with_columns(axis.alias(HOST_TIME)).with_columns(
        # A host's first row is its earliest: a forward fill carries its origin along.
        ((pl.col(HOST_TIME) - pl.when(first).then(pl.col(HOST_TIME)).forward_fill()).dt.total_microseconds() / 1e6)
        .alias(HOST_SECONDS)
    )


def apply(frame: pl.DataFrame, defs: list[FeatureDef]) -> pl.DataFrame:
    """frame with every definition's column added, computed in one parallel pass."""
    return frame.with_columns([d.expr.alias(d.feature.name) for d in defs]) if defs else frame


def seconds(window_s: float) -> str:
    """A Polars duration string for a window: ``seconds(30) == "30s"`` (``window_seconds`` reads it back)."""
    return f"{int(window_s * 1000)}ms" if window_s % 1 else f"{int(window_s)}s"


def window_seconds(window: str) -> float:
    """The seconds of a duration string ``seconds`` made: ``window_seconds("1500ms") == 1.5``."""
    return float(window[:-2]) / 1000 if window.endswith("ms") else float(window[:-1])


def safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null where the denominator is 0 or null (never inf)."""
    return pl.when(denominator != 0).then(numerator / denominator).otherwise(None)
