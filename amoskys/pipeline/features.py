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


def apply(frame: pl.DataFrame, defs: list[FeatureDef]) -> pl.DataFrame:
    """frame with every definition's column added, computed in one parallel pass."""
    return frame.with_columns([d.expr.alias(d.feature.name) for d in defs]) if defs else frame


def seconds(window_s: float) -> str:
    """A Polars duration string for a window: ``seconds(30) == "30s"``."""
    return f"{int(window_s * 1000)}ms" if window_s % 1 else f"{int(window_s)}s"


def safe_ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """numerator / denominator, null where the denominator is 0 or null (never inf)."""
    return pl.when(denominator != 0).then(numerator / denominator).otherwise(None)
