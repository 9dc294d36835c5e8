"""``amoskys score``: a registered model on new rows, the flagged ones with their threat and explanation.

Rows come from a feature file (Parquet or CSV, as the pipeline writes them) or from the
store: raw telemetry since a time, turned into features by the pipeline's stages 1-4 and
the stage 5 fitted with the model's training data (its baselines, not new ones). The
store is read from an hour before ``since``, so that windows and baselines are full at
``since``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from amoskys.config import Config
from amoskys.errors import InputError
from amoskys.models.base import Detector
from amoskys.models.calibration import level
from amoskys.timeutil import NS, format_ns

LOOKBACK_S = 3600  # the longest window of any default feature (the security pack's hourly baselines)


def read_feature_file(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix == ".csv":
        return pl.read_csv(path, try_parse_dates=True, infer_schema_length=10_000)
    raise InputError(f"{path}: expected a .parquet or .csv feature file")


def features_from_store(store_path: Path, config: Config, data_folder: Path, since_ns: int | None) -> pl.DataFrame:
    """Feature rows of the store's telemetry since since_ns, computed as the model's training data was."""
    from amoskys.pipeline.outputs import load_stage
    from amoskys.pipeline.run import features_with
    from amoskys.pipeline.source import read_store
    from amoskys.store import Store

    if not store_path.exists():
        raise InputError(f"{store_path}: no such store")
    stage = load_stage(data_folder)
    with Store.open(store_path, create=False) as store:
        raw = read_store(store, since_ns=None if since_ns is None else since_ns - LOOKBACK_S * NS)
    if raw.snapshots.height == 0:
        raise InputError(f"{store_path} holds no telemetry" + (" in that time range" if since_ns else ""))
    frame = features_with(raw, config, stage)
    if since_ns is not None:
        frame = frame.filter(pl.col("ts").dt.epoch("ns") >= since_ns)
    return frame


def flagged(model: Detector, frame: pl.DataFrame, top_k: int = 5, every_row: bool = False) -> list[dict]:
    """The rows the model flags (score at or above its threshold), or every row, with threat and explanation."""
    scores = model.score_samples(frame)
    rows = np.arange(frame.height) if every_row else np.flatnonzero(scores >= model.threshold_)
    if len(rows) == 0:
        return []
    picked = frame[rows]
    threats = model.threat_of(scores[rows])
    assessments = model.assess(picked, top_k) if hasattr(model, "assess") else None
    explained = None if assessments is not None else model.explain(picked, top_k)
    hosts, times = picked["host"].to_list(), picked["ts"].dt.epoch("ns").to_list()
    out = []
    for i, row in enumerate(rows):
        base = {"host": hosts[i], "ts": format_ns(times[i]), "score": float(scores[row]),
                "threat": round(float(threats[i]), 2), "level": level(float(threats[i]))}  # fmt: skip
        if assessments is not None:
            assessed = assessments.row(i)
            base |= {"members": assessed["members"], "rules": assessed["rules"], "features": assessed["features"]}
        else:
            base |= {"members": {}, "rules": [], "features": [c.as_dict() for c in explained[i]]}
        out.append(base)
    return out


def render(rows: list[dict], scored: int, model_id: str, limit: int | None = None) -> str:
    """Text for people: a header, then each row (the first limit of them) with its top features."""
    lines = [f"{model_id}: {len(rows)} of {scored:,} rows flagged" + (f", the first {limit} shown" if limit and len(rows) > limit else "")]
    for row in rows[:limit]:
        rules = f"   rules: {', '.join(row['rules'])}" if row["rules"] else ""
        lines.append(f"{row['host']}  {row['ts']}  threat {row['threat']:5.1f} {row['level']:<8}{rules}")
        for feature in row["features"]:
            value = "missing" if feature["value"] is None else f"{feature['value']:.4g}"
            low, high = feature["typical"]
            lines.append(f"    {feature['feature']:<44} {value:>12}   typical {low:.4g} .. {high:.4g}")
    return "\n".join(lines)
