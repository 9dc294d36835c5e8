"""``amoskys retrain``: a new live model set from recent telemetry and the analysts' verdicts, promoted only if
it is not worse than the active one on the same holdout.

1. The store's telemetry (``--since``, default all) goes through the pipeline into a new
   folder beside the active data (``retrain-<UTC>``). Alerts an analyst marked true
   become labeled incidents (kind ``analyst``); rows of alerts marked false stay normal.
2. Drift: the population stability index of every feature of the active model, its
   training rows against the new rows (``drift``). ``--if-drifted`` stops here unless
   some feature's PSI reaches ``detect.drift_psi``.
3. The candidate set (iforest, pca, xgboost when labels exist, and the live ensemble)
   is trained on the new training split. Candidate and active model then score the same
   holdout rows, the new validation split, each with the stage 5 it was trained with.
   With labels on the holdout the better PR-AUC wins; without, the fewer rows at or above
   the alert level (false alarms, on data believed normal). The candidate is promoted,
   its entries copied into the active registry, unless it is worse by more than
   ``TOLERANCE``; the detector uses it from its next start, or at once when it runs this
   on a schedule (``schedule``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

from amoskys.config import Config
from amoskys.detect.policy import policy_of

TOLERANCE = 0.01  # PR-AUC, or share of holdout rows alarming
LIVE_SET = ("iforest", "pca", "live")


@dataclass
class RetrainReport:
    data: Path
    drift: dict[str, float] = field(default_factory=dict)  # the most drifted features, PSI
    drifted: bool = False
    candidate: str | None = None
    active: str | None = None
    metric: str = ""
    candidate_value: float | None = None
    active_value: float | None = None
    promoted: bool = False
    analyst_labels: int = 0

    def lines(self) -> list[str]:
        out = [f"data        {self.data}", f"labels      {self.analyst_labels} alerts marked true by analysts"]
        if self.drift:
            top = ", ".join(f"{name} {value:.2f}" for name, value in list(self.drift.items())[:5])
            out.append(f"drift (PSI) {'DRIFTED' if self.drifted else 'stable'}: {top}")
        if self.candidate:
            def shown(v):
                return "-" if v is None else f"{v:.4f}"

            out.append(f"holdout     {self.metric}: candidate {self.candidate} {shown(self.candidate_value)}, "
                       f"active {self.active or 'none'} {shown(self.active_value)}")  # fmt: skip
            out.append("promoted    " + ("yes: detectors use it from their next start (on a retrain schedule, at once)"
                                         if self.promoted
                                         else "no: the candidate is worse; the active set stays"))  # fmt: skip
        return out


def retrain(config: Config, store_path: Path, since: str | None = None, if_drifted: bool = False) -> RetrainReport:
    from amoskys.detect.cli import load_live_model
    from amoskys.detect.drift import feature_drift
    from amoskys.errors import InputError
    from amoskys.models.registry import Registry
    from amoskys.models.train import TRAIN, train_models
    from amoskys.pipeline.run import run_pipeline
    from amoskys.pipeline.source import read_store
    from amoskys.store.store import Store
    from amoskys.timeutil import parse_time

    try:
        active = load_live_model(config)
    except InputError:
        active = None  # nothing to compare with: the candidate is promoted
    with Store.open(store_path, create=False) as store:
        raw = read_store(store, since_ns=parse_time(since) if since else None)
    if raw.snapshots.height == 0:
        raise InputError(f"{store_path} holds no telemetry{' since ' + since if since else ''} to retrain on")
    raw, labels = with_analyst_labels(raw, store_path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = config.pipeline.out.parent / f"retrain-{stamp}"
    run_pipeline(config, store_path, out, raw=raw)
    report = RetrainReport(out, analyst_labels=labels)
    train, val = pl.read_parquet(out / TRAIN), pl.read_parquet(out / "val_features.parquet")
    if active is not None:
        reference = pl.read_parquet(active.data_folder / TRAIN)
        report.drift = feature_drift(reference, pl.concat([train, val], how="diagonal_relaxed"), active.model.features_)
        report.drifted = max(report.drift.values(), default=0.0) >= config.detect.drift_psi
        if if_drifted and not report.drifted:
            return report
    with_labels = "label" in train.columns and train["label"].n_unique() == 2
    trained = train_models(out, out / "registry", models=[*LIVE_SET[:2], *(["xgboost"] if with_labels else []), LIVE_SET[2]])
    candidate = next(t.entry for t in trained if t.entry.model == "live")
    report.candidate = candidate.id
    _compare(report, config, raw, val, load_live_model(replace(config, detect=replace(config.detect, registry=out / "registry"))), active)
    if report.promoted:
        active_registry = Registry(config.detect.registry)
        for t in trained:
            active_registry.copy_in(t.entry)
    return report


def with_analyst_labels(raw, store_path: Path):
    """raw with every alert whose latest verdict is true as a labeled incident; and how many there were."""
    from amoskys.store.alerts import read_alerts, read_feedback
    from amoskys.store.store import Store

    with Store.open(store_path, create=False) as store:
        verdicts = {f.alert_id: f.verdict for f in read_feedback(store)}  # the latest verdict wins
        confirmed = [a for a in read_alerts(store) if verdicts.get(a.id)]
    if not confirmed:
        return raw, 0
    rows = pl.DataFrame({"host": [a.host for a in confirmed], "kind": ["analyst"] * len(confirmed),
                         "start_ns": [a.start_ns for a in confirmed], "end_ns": [a.end_ns + 1 for a in confirmed]})  # fmt: skip
    incidents = pl.concat([raw.incidents, rows.cast(raw.incidents.schema)], how="vertical_relaxed")
    return replace(raw, incidents=incidents), len(confirmed)


def _compare(report: RetrainReport, config: Config, raw, val: pl.DataFrame, candidate, active) -> None:
    """Score the holdout with both (each on the features of its own stage 5) and decide the promotion."""
    from amoskys.models.evaluate import evaluate
    from amoskys.pipeline.run import features_with

    floor = policy_of(config.detect).floor
    labeled = "label" in val.columns and val["label"].n_unique() == 2
    report.metric = "PR-AUC" if labeled else "share of rows at or above the alert level"

    def value(model, rows: pl.DataFrame) -> float | None:
        scores = model.score_samples(rows)
        return evaluate(rows, scores, floor).pr_auc if labeled else float(np.mean(scores >= floor))

    report.candidate_value = value(candidate.model, val)
    if active is None:
        report.promoted = True
        return
    report.active = active.entry_id
    keys = val.select("host", "ts")
    own = keys.join(features_with(raw, config, active.anomaly), on=["host", "ts"], how="left", maintain_order="left")
    report.active_value = value(active.model, own)
    if labeled:
        report.promoted = report.candidate_value >= report.active_value - TOLERANCE
    else:
        report.promoted = report.candidate_value <= report.active_value + TOLERANCE
