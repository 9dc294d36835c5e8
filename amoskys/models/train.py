"""``amoskys train``: fit detectors on a pipeline output folder, evaluate them on its validation split, register them.

The data folder is what ``amoskys pipeline run`` wrote: ``train_features.parquet``,
``val_features.parquet``, ``feature_metadata.json`` and ``pipeline_summary.json``. Every
model learns from the training split only (its threshold too) and is evaluated on the
validation split (``evaluate``). The ``bdh`` ensemble reuses the members trained in the
same run rather than training them again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from amoskys.errors import InputError
from amoskys.models import ENSEMBLES, available, get
from amoskys.models.base import Detector
from amoskys.models.evaluate import Evaluation, evaluate, format_table, settling_rows
from amoskys.models.live import FAST_MEMBERS
from amoskys.models.registry import Entry, Registry, default_registry
from amoskys.pipeline.features import window_seconds

TRAIN, VAL, METADATA, SUMMARY = "train_features.parquet", "val_features.parquet", "feature_metadata.json", "pipeline_summary.json"
# Features that grow with time on every host: every validation row would sit outside the training range.
TIME_TRENDING = frozenset({"uptime_seconds"})
_PARITY_ROWS = 512  # validation rows the ONNX export is checked on


@dataclass(frozen=True)
class Dataset:
    folder: Path
    train: pl.DataFrame
    val: pl.DataFrame
    features: list[str]
    data_source: str
    sha256: str

    @property
    def labels(self) -> np.ndarray | None:
        """Training labels when they hold both classes, else None."""
        if "label" not in self.train.columns or self.train["label"].n_unique() < 2:
            return None
        return self.train["label"].to_numpy()


@dataclass(frozen=True)
class Trained:
    entry: Entry
    evaluation: Evaluation
    seconds: float


def load_dataset(folder: Path, max_window_s: float | None = None) -> Dataset:
    """The pipeline outputs in folder; a clear error when something is missing.

    max_window_s: leave out the features whose declared window is longer (a window longer
    than the training data is never full there, so it never learned its normal range).
    """
    if missing := [name for name in (TRAIN, VAL, METADATA) if not (folder / name).is_file()]:
        raise InputError(f"{folder} is not a pipeline output folder: {', '.join(missing)} missing "
                         "(run `amoskys pipeline run --out DIR` first)")  # fmt: skip
    metadata = json.loads((folder / METADATA).read_text())
    # Rows still echoing an incident in their windows are left out of both (see ``settling_rows``).
    train, val = (_without_settling(pl.read_parquet(folder / name)) for name in (TRAIN, VAL))
    declared = metadata["features"]
    features = [name for name in declared if name not in TIME_TRENDING and name in train.columns
                and (max_window_s is None or not declared[name]["window"]
                     or window_seconds(declared[name]["window"]) <= max_window_s)]  # fmt: skip
    digest = hashlib.sha256()
    for name in (TRAIN, VAL):
        with open(folder / name, "rb") as data:
            while block := data.read(1 << 20):
                digest.update(block)
    return Dataset(folder, train, val, features, metadata.get("data_source", "unknown"), digest.hexdigest())


def _without_settling(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.Series(~settling_rows(frame)))


def default_models(dataset: Dataset) -> list[str]:
    """Every model the data allows: xgboost only with labels; bdh last (it reuses the others)."""
    return [name for name in available() if name != "xgboost" or dataset.labels is not None]


def train_models(data_dir: Path, registry_dir: Path | None = None, models: list[str] | None = None,
                 verbose: bool = False, max_window_s: float | None = None) -> list[Trained]:  # fmt: skip
    """Train, evaluate and register each model (on features with windows up to max_window_s); returns them in
    training order."""
    dataset = load_dataset(data_dir, max_window_s)
    names = models or default_models(dataset)
    if unknown := [n for n in names if n not in available()]:
        raise InputError(f"unknown model {unknown[0]!r}; available: {', '.join(available())}")
    names = sorted(names, key=lambda n: n in ENSEMBLES)  # the ensembles after their members
    registry = Registry(registry_dir or default_registry(data_dir))
    fitted: dict[str, Detector] = {}
    out = []
    bar = tqdm(names, desc="train", unit="model", disable=False if verbose else None)
    for name in bar:
        bar.set_postfix_str(name)
        model = get(name, **_ensemble_members(name, fitted))
        started = time.perf_counter()
        model.fit(dataset.train, dataset.labels, features=dataset.features)
        seconds = time.perf_counter() - started
        fitted[name] = model
        evaluation = evaluate(dataset.val, model.score_samples(dataset.val), model.threshold_)
        entry = registry.add(model, _card(model, dataset, seconds, evaluation), extra=_onnx_export(model, dataset))
        out.append(Trained(entry, evaluation, seconds))
        if not bar.disable:
            bar.write(f"  {name:<15} {seconds:7.2f} s  -> {entry.id}")
    bar.close()
    return out


def _ensemble_members(name: str, fitted: dict[str, Detector]) -> dict:
    """An ensemble's members: those trained before it in this run (bdh: every one; live: the fast tier), or
    its defaults when none was."""
    if name not in ENSEMBLES:
        return {}
    members = {n: m for n, m in fitted.items() if n not in ENSEMBLES and (name == "bdh" or n in FAST_MEMBERS)}
    return {"members": tuple(members), "prefit": members} if members else {}


def evaluation_table(trained: list[Trained]) -> str:
    return format_table({t.entry.id: t.evaluation for t in trained})


def _card(model: Detector, dataset: Dataset, seconds: float, evaluation: Evaluation) -> dict:
    params = {k: v for k, v in vars(model).items() if not k.endswith("_") and k != "prefit"}
    return {
        "data": {"folder": str(dataset.folder.resolve()), "source": dataset.data_source, "sha256": dataset.sha256,
                 "train_rows": dataset.train.height, "val_rows": dataset.val.height},  # fmt: skip
        "features": list(model.features_),
        "parameters": json.loads(json.dumps(params, default=repr)),
        "training_seconds": round(seconds, 3),
        "threshold": model.threshold_,
        "threshold_quantile": model.threshold_quantile,
        "validation": evaluation.as_dict(),
    }


def _onnx_export(model: Detector, dataset: Dataset):
    """A callback writing model.onnx into the entry folder and checking it against the model, where supported."""
    export = getattr(model, "export_onnx", None)
    if export is None:
        return None

    def write(folder: Path) -> list[Path]:
        path = export(folder / "model.onnx")
        if path is None:
            return []
        rows = dataset.val.head(_PARITY_ROWS)
        difference = model.onnx_parity(path, rows)
        largest = float(np.abs(model.score_samples(rows)).max(initial=0.0))
        parity = {"rows": rows.height, "max_abs_difference": difference,
                  "max_relative_difference": difference / max(largest, 1e-12)}  # float32 in the graph: relative counts
        (folder / "onnx_parity.json").write_text(json.dumps(parity) + "\n")
        return [path, folder / "onnx_parity.json"]

    return write
