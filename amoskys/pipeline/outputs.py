"""What the pipeline leaves on disk: the datasets, ``feature_metadata.json`` and ``pipeline_summary.json``.

Each dataset is written twice: Parquet (snappy, with the data source in the file's
key-value metadata, for the model code) and CSV (ISO 8601 UTC timestamps, for people
and other tools). Every file is written under a temporary name and then renamed, so a
reader never sees half a file.

``feature_metadata.json`` is generated from the ``Feature`` declarations; it refuses a
frame whose feature columns and declarations differ, so no column ships undocumented.
Its summary statistics come from the training split only: statistics that had seen the
validation rows would leak them into whatever is fitted on the metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

import amoskys
from amoskys.errors import InputError
from amoskys.pipeline.features import KEY_COLUMNS, LABEL_COLUMNS, STAGE_NAMES, Feature

if TYPE_CHECKING:
    from amoskys.pipeline.anomaly import AnomalyStage
    from amoskys.pipeline.canonical import CanonicalReport

FEATURE_METADATA = "feature_metadata.json"
ANOMALY_STAGE = "anomaly_stage.joblib"  # stage 5 as fitted: scoring new telemetry needs the same baselines
PIPELINE_SUMMARY = "pipeline_summary.json"
CSV_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"  # ISO 8601 in UTC; fractional seconds only when there are any
_QUANTILES = {"p01": 0.01, "p50": 0.5, "p99": 0.99}


def write_datasets(out_dir: Path, canonical: pl.DataFrame, train: pl.DataFrame, val: pl.DataFrame,
                   data_source: str) -> list[Path]:  # fmt: skip
    """Write canonical_telemetry, train_features and val_features as .parquet and .csv; return the paths."""
    out_dir = Path(out_dir)
    paths = []
    with writable(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, frame in (("canonical_telemetry", canonical), ("train_features", train), ("val_features", val)):
            parquet, csv = out_dir / f"{name}.parquet", out_dir / f"{name}.csv"
            with _replacing(parquet) as tmp:
                frame.write_parquet(tmp, compression="snappy", metadata={"data_source": data_source})
            with _replacing(csv) as tmp:
                _utc(frame).write_csv(tmp, datetime_format=CSV_DATETIME_FORMAT)
            paths += [parquet, csv]
    return paths


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The columns of a pipeline frame that are features (not keys or labels), in frame order."""
    return [c for c in frame.columns if c not in KEY_COLUMNS + LABEL_COLUMNS]


def check_declarations(features: list[Feature], frame: pl.DataFrame) -> None:
    """Raise ValueError unless every feature column of frame has exactly one complete declaration and vice versa."""
    names = [f.name for f in features]
    columns = feature_columns(frame)
    problems = []
    if undeclared := [c for c in columns if c not in names]:
        problems.append(f"columns without a declaration: {', '.join(undeclared)}")
    if absent := [n for n in names if n not in columns]:
        problems.append(f"declarations without a column: {', '.join(absent)}")
    if twice := sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"declared more than once: {', '.join(twice)}")
    if blank := [f.name for f in features if not f.unit.strip() or not f.description.strip()]:
        problems.append(f"declared without a unit or description: {', '.join(blank)}")
    if wrong := [f"{f.name} ({f.dtype} declared, {frame.schema[f.name]} found)" for f in features
                 if f.name in columns and str(frame.schema[f.name]).lower() != f.dtype.lower()]:  # fmt: skip
        problems.append(f"dtype differs from its declaration: {', '.join(wrong)}")
    if problems:
        raise ValueError("feature declarations do not match the frame: " + "; ".join(problems))


def feature_metadata(features: list[Feature], train: pl.DataFrame, data_source: str,
                     fitted: Mapping | None = None) -> dict:  # fmt: skip
    """Every feature's declaration plus summary statistics of the TRAIN split, keyed by name in column order.

    ``stats`` has ``count`` (finite values), ``nulls``, ``nonfinite`` (NaN or infinite), then
    ``mean``, ``std``, ``min``, ``p01``, ``p50``, ``p99``, ``max`` over the finite values
    (null when there are none). ``stats["mean"]`` and ``stats["std"]`` are the scaler's statistics.
    ``fitted``: what stages learned from the training rows (stage 5's statistics), kept as given.
    """
    check_declarations(features, train)
    declared = {f.name: f for f in features}
    columns = feature_columns(train)
    stats = _train_stats(train, columns)
    return {
        "version": amoskys.__version__,
        "generated_at": _now(),
        "data_source": data_source,
        "feature_count": len(columns),
        "stats_split": "train",
        "train_rows": train.height,
        "features": {c: {**declared[c].as_dict(), "stats": stats[c]} for c in columns},
        "fitted": dict(fitted or {}),
    }


def pipeline_summary(data_source: str, canonical: pl.DataFrame, train: pl.DataFrame, val: pl.DataFrame,
                     features: list[Feature], stage_seconds: Mapping[str, float],
                     canonical_report: CanonicalReport | Mapping) -> dict:  # fmt: skip
    """What one run produced, for pipeline_summary.json.

    data_source: ``real``, ``simulated`` or ``mixed``; canonical, train, val: the stage-1 frame and
    the two splits; features: the declarations of the columns of train and val; stage_seconds:
    wall-clock seconds per stage, by any stage name the runner uses (e.g. ``{"canonical": 1.2}``);
    canonical_report: stage 1's ``CanonicalReport`` or ``dataclasses.asdict`` of it.
    """
    report = asdict(canonical_report) if is_dataclass(canonical_report) else dict(canonical_report)
    per_stage = {name: sum(1 for f in features if f.stage == stage) for stage, name in STAGE_NAMES.items()}
    return {
        "version": amoskys.__version__,
        "generated_at": _now(),
        "data_source": data_source,
        "hosts": sorted(canonical["host"].unique().to_list()),
        "host_count": canonical["host"].n_unique(),
        "time_range": _time_range(canonical),
        "rows": {"canonical": canonical.height, "train": train.height, "val": val.height},
        "split_time_ranges": {"train": _time_range(train), "val": _time_range(val)},
        "labels": {"canonical": _label_balance(canonical), "train": _label_balance(train), "val": _label_balance(val)},
        "feature_count": len(features),
        "features_per_stage": per_stage,
        "stage_seconds": {**{k: round(float(v), 3) for k, v in stage_seconds.items()},
                          "total": round(float(sum(stage_seconds.values())), 3)},  # fmt: skip
        "canonical_report": report,
    }


def write_metadata(out_dir: Path, features: list[Feature], train: pl.DataFrame, data_source: str,
                   fitted: Mapping | None = None) -> Path:  # fmt: skip
    """Write ``feature_metadata(...)`` to out_dir/feature_metadata.json; return the path."""
    return _write_json(out_dir, FEATURE_METADATA, feature_metadata(features, train, data_source, fitted))


def write_summary(out_dir: Path, summary: Mapping) -> Path:
    """Write a ``pipeline_summary(...)`` to out_dir/pipeline_summary.json; return the path."""
    return _write_json(out_dir, PIPELINE_SUMMARY, summary)


def _write_json(out_dir: Path, name: str, document: Mapping) -> Path:
    """Write document as strict JSON (non-finite numbers become null) to out_dir/name; return the path."""
    out_dir = Path(out_dir)
    path = out_dir / name
    with writable(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
        with _replacing(path) as tmp:
            tmp.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")
    return path


@contextmanager
def writable(out_dir: Path) -> Iterator[None]:
    """Turns any OS error in the block into one InputError line that names the output folder."""
    try:
        yield
    except OSError as error:
        raise InputError(f"cannot write pipeline outputs to {out_dir}: {error.strerror or error}") from error


def save_stage(out_dir: Path, stage: AnomalyStage) -> Path:
    """Write the fitted stage 5 to out_dir/anomaly_stage.joblib; return the path."""
    import joblib

    path = Path(out_dir) / ANOMALY_STAGE
    with writable(path.parent), _replacing(path) as tmp:
        joblib.dump(stage, tmp)
    return path


def load_stage(folder: Path) -> AnomalyStage:
    """The fitted stage 5 that ``save_stage`` wrote into folder."""
    import joblib

    path = Path(folder) / ANOMALY_STAGE
    if not path.is_file():
        raise InputError(f"{path} is missing: run `amoskys pipeline run` to write it")
    return joblib.load(path)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside path, renamed onto path only if the block succeeds."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    zoned = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is not None]
    return frame.with_columns(pl.col(zoned).dt.convert_time_zone("UTC")) if zoned else frame


def _train_stats(train: pl.DataFrame, columns: list[str]) -> dict[str, dict]:
    """Every statistic of every numeric column, computed in parallel by one Polars select over the finite values."""
    numeric = [c for c in columns if train.schema[c].is_numeric()]
    stats: dict[str, dict] = {c: {} for c in columns}
    if not numeric:
        return stats
    nulls = train.select(pl.col(numeric).null_count()).row(0, named=True)
    finite = train.select(pl.when(pl.col(c).is_finite()).then(pl.col(c).cast(pl.Float64)).alias(c) for c in numeric)
    simple = {"count": pl.Expr.count, "mean": pl.Expr.mean, "std": pl.Expr.std, "min": pl.Expr.min, "max": pl.Expr.max}
    # One quantile per expression: a list of quantiles per expression is several times slower in Polars 2.1.
    row = finite.select(
        *(aggregate(pl.col(c)).alias(f"{c}\0{name}") for c in numeric for name, aggregate in simple.items()),
        *(pl.col(c).quantile(q, "linear").alias(f"{c}\0{name}") for c in numeric for name, q in _QUANTILES.items()),
    ).row(0, named=True)
    order = ("mean", "std", "min", *_QUANTILES, "max")
    for c in numeric:
        count = row[f"{c}\0count"]
        stats[c] = {"count": count, "nulls": nulls[c], "nonfinite": train.height - count - nulls[c],
                    **{name: row[f"{c}\0{name}"] for name in order}}  # fmt: skip
    return stats


def _time_range(frame: pl.DataFrame) -> dict:
    if frame.height == 0 or "ts" not in frame.columns:
        return {"start": None, "end": None}
    return {"start": frame["ts"].min().isoformat(), "end": frame["ts"].max().isoformat()}


def _label_balance(frame: pl.DataFrame) -> dict | None:
    """Benign and incident rows, and incident rows per incident kind; None for an unlabeled frame."""
    if not {"label", "incident"} <= set(frame.columns):
        return None
    incident_rows = int(frame["label"].sum() or 0)
    kinds = frame.filter(pl.col("label") == 1).group_by("incident").len().sort("incident")
    return {
        "rows": frame.height,
        "benign": frame.height - incident_rows,
        "incident": incident_rows,
        "incident_share": round(incident_rows / frame.height, 6) if frame.height else None,
        "by_kind": {str(k): int(n) for k, n in kinds.iter_rows()},
    }


def _finite(value):
    """value with NumPy scalars made plain and NaN or infinite numbers made None, at any depth."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
