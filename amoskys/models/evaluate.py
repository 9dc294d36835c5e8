"""Honest evaluation of anomaly scores on a validation split.

``evaluate(rows, scores, threshold)`` takes the validation rows (``host``, ``ts``, and
``label``/``incident`` when labeled), one score per row (higher = more anomalous) and
the threshold set on training data (alarm = ``score >= threshold``), and reports:

- threshold-free ranking quality: ROC-AUC, PR-AUC (average precision), and the best
  F1 over every threshold (an upper bound: that threshold was chosen on these labels);
- the deployed threshold: precision, recall and F1 per row;
- per incident (a run of label-1 rows of one host, cut by a time gap of more than two
  grid steps or a change of incident kind): the share detected (range-based recall)
  and the median time from incident start to first alarm;
- false alarm events per benign host-hour (a run of alarmed benign rows counts once).

There is no point-adjusted F1: it marks a whole incident as detected once any of its
rows alarms, so even random scores reach a high F1 on long incidents. Range recall and
time-to-detect give the per-incident view without that inflation.

Without labels (no ``label`` column, or no label 1), every label-dependent metric is
None; the false alarm rate still counts, with every row benign.

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> rows = pl.DataFrame({"host": ["a"] * 4, "ts": [t0 + timedelta(seconds=5 * i) for i in range(4)],
...                      "label": pl.Series([0, 1, 1, 0], dtype=pl.Int8)})
>>> result = evaluate(rows, np.array([0.1, 0.2, 0.9, 0.3]), threshold=0.5)
>>> result.roc_auc, result.range_recall, result.median_ttd_s
(0.75, 1.0, 5.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

from amoskys.errors import InputError

DEFAULT_STEP_S = 5.0  # grid step for a frame where no host has two rows
GAP_STEPS = 2  # a time gap larger than this many grid steps ends a run (incident or alarm event)
SETTLE_S = 300.0  # the longest feature window of stages 2 and 5: how long an incident stays in the features


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one model on one validation split; None where undefined."""

    rows: int
    positives: int
    hosts: int
    labeled: bool  # some row has label 1
    roc_auc: float | None
    pr_auc: float | None
    best_f1: float | None
    best_f1_threshold: float | None
    f1_at_threshold: float | None
    precision_at_threshold: float | None  # None when nothing alarms
    recall_at_threshold: float | None
    range_recall: float | None
    median_ttd_s: float | None  # None when no incident is detected
    incidents_detected: int
    incidents_total: int
    false_alarm_events: int
    benign_rows_alarmed: int
    benign_host_hours: float
    false_alarms_per_host_hour: float | None  # None with no benign rows

    def as_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self)


def evaluate(rows: pl.DataFrame, scores: np.ndarray, threshold: float) -> Evaluation:
    """Score the alarms ``scores >= threshold`` against the labels of ``rows`` (see the module doc)."""
    scores, threshold = _checked(rows, scores, threshold)
    has_label = "label" in rows.columns
    # sort with the scores attached, so the metrics never depend on the caller's row order
    frame = rows.select(
        "host",
        ns=pl.col("ts").dt.epoch("ns"),
        label=pl.col("label").cast(pl.Int8) if has_label else pl.lit(0, dtype=pl.Int8),
        kind=pl.col("incident").cast(pl.String) if "incident" in rows.columns else pl.lit(None, dtype=pl.String),
        score=pl.Series(scores),
    ).sort("host", "ns", maintain_order=True)
    if frame["label"].null_count() or not frame["label"].is_in([0, 1]).all():
        raise InputError("label must be 0 or 1 on every row")

    step_ns, cont = _grid(frame)
    y = frame["label"].to_numpy().astype(bool)
    s = frame["score"].to_numpy()
    ns = frame["ns"].to_numpy()
    alarm = s >= threshold
    positives = int(y.sum())
    labeled = positives > 0
    both = labeled and positives < len(y)

    # incidents: runs of label 1, also cut when the incident kind changes between adjacent rows
    kind = frame["kind"]
    same_kind = np.ones(len(y), dtype=bool)
    same_kind[1:] = kind[1:].eq_missing(kind[:-1]).to_numpy()
    starts = _run_starts(y, cont & same_kind)
    incident = np.cumsum(starts) - 1  # incident index on label-1 rows
    total = int(starts.sum())
    hit = y & alarm
    detected, first = np.unique(incident[hit], return_index=True)
    ttd = (ns[hit][first] - ns[starts][detected]) / 1e9

    benign_alarm = ~y & alarm
    host_hours = float(step_ns[~y].sum() / 3.6e12)
    events = int(_run_starts(benign_alarm, cont).sum())

    best_f1, best_thr = _best_f1(y, s) if labeled else (None, None)
    tp, n_alarm = int(hit.sum()), int(alarm.sum())
    return Evaluation(
        rows=len(y),
        positives=positives,
        hosts=frame["host"].n_unique(),
        labeled=labeled,
        roc_auc=float(roc_auc_score(y, s)) if both else None,
        pr_auc=float(average_precision_score(y, s)) if both else None,
        best_f1=best_f1,
        best_f1_threshold=best_thr,
        f1_at_threshold=2 * tp / (n_alarm + positives) if labeled else None,
        precision_at_threshold=tp / n_alarm if labeled and n_alarm else None,
        recall_at_threshold=tp / positives if labeled else None,
        range_recall=len(detected) / total if total else None,
        median_ttd_s=float(np.median(ttd)) if len(ttd) else None,
        incidents_detected=len(detected),
        incidents_total=total,
        false_alarm_events=events,
        benign_rows_alarmed=int(benign_alarm.sum()),
        benign_host_hours=host_hours,
        false_alarms_per_host_hour=events / host_hours if host_hours > 0 else None,
    )


def settling_rows(rows: pl.DataFrame, settle_s: float = SETTLE_S) -> np.ndarray:
    """True for the label-0 rows within settle_s after a label-1 row of the same host.

    Their windowed features still hold the incident, so they are neither normal nor an
    attack: training leaves them out of "normal", and evaluation out of both classes
    (an alarm there is the incident's echo, not a false alarm on a healthy host).
    """
    if "label" not in rows.columns:
        return np.zeros(rows.height, dtype=bool)
    last = pl.when(pl.col("label") == 1).then(pl.col("ts")).forward_fill().over("host", order_by="ts")
    since = (pl.col("ts") - last).dt.total_nanoseconds()
    settling = (pl.col("label") == 0) & (since <= int(settle_s * 1e9))
    return rows.select(settling.fill_null(False)).to_series().to_numpy()


def format_table(results: dict[str, Evaluation]) -> str:
    """One aligned row per model: ROC-AUC, PR-AUC, best F1, F1@thr, range recall, median TTD, FA/host-h."""
    columns = [("ROC-AUC", "roc_auc", 3), ("PR-AUC", "pr_auc", 3), ("best F1", "best_f1", 3),
               ("F1@thr", "f1_at_threshold", 3), ("range recall", "range_recall", 3),
               ("median TTD (s)", "median_ttd_s", 1), ("FA/host-h", "false_alarms_per_host_hour", 2)]  # fmt: skip
    header = ["model", *(title for title, _, _ in columns)]
    body = [
        [name, *("-" if (v := getattr(e, field)) is None else f"{v:.{digits}f}" for _, field, digits in columns)]
        for name, e in results.items()
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join([line[0].ljust(widths[0]), *(cell.rjust(w) for cell, w in zip(line[1:], widths[1:]))]).rstrip()
        for line in [header, *body]
    )


def _checked(rows: pl.DataFrame, scores: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    missing = [c for c in ("host", "ts") if c not in rows.columns]
    if missing:
        raise InputError(f"rows to evaluate lack column(s) {', '.join(missing)}")
    if not isinstance(rows.schema["ts"], pl.Datetime):
        raise InputError(f"rows to evaluate need a Datetime ts column, got {rows.schema['ts']}")
    if rows["host"].null_count() or rows["ts"].null_count():
        raise InputError("rows to evaluate have a null host or ts")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) != rows.height:
        raise InputError(f"got {scores.size} scores for {rows.height} rows; need one score per row")
    if not np.isfinite(scores).all():
        raise InputError(f"{int((~np.isfinite(scores)).sum())} score(s) are NaN or infinite")
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"threshold must be a finite number, got {threshold!r}")
    return scores, value


def _grid(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its host's grid step (ns; the median positive ts step), and whether it continues the row before.

    A row continues the previous one when both are on the same host and at most
    ``GAP_STEPS`` grid steps apart. A single-row host takes the median step of all hosts.
    """
    diff = pl.col("ns").diff().over("host")
    steps = frame.select(diff=diff, step=diff.filter(diff > 0).median().over("host"))
    fallback = steps["step"].median()
    step = steps["step"].fill_null(fallback if fallback is not None else DEFAULT_STEP_S * 1e9).to_numpy()
    gap = steps["diff"].to_numpy(allow_copy=True).astype(np.float64)  # null (first row of a host) -> NaN
    return step, gap <= GAP_STEPS * step  # NaN compares False: a host's first row starts a run


def _run_starts(mask: np.ndarray, cont: np.ndarray) -> np.ndarray:
    """Rows where a run of ``mask`` begins: mask is set and the row does not continue a masked row."""
    prev = np.zeros_like(mask)
    prev[1:] = mask[:-1]
    return mask & ~(prev & cont)


def _best_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """The highest F1 over every threshold ``score >= t`` (t a distinct score), and the highest t reaching it."""
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each group of equal scores
    tp = np.cumsum(y)[last]
    f1 = 2 * tp / (last + 1 + y.sum())  # 2TP / (alarms + positives)
    best = int(np.argmax(f1))  # first maximum: the highest threshold, fewest alarms
    return float(f1[best]), float(s[last[best]])
