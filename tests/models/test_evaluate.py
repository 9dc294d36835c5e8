"""evaluate() on hand-built frames whose every metric is known by hand, and against sklearn."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from amoskys.errors import InputError
from amoskys.models.evaluate import Evaluation, evaluate, format_table

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def frame(hosts: dict[str, list[float]], labels: dict[str, list[int]] | None = None,
          kinds: dict[str, list[str | None]] | None = None) -> pl.DataFrame:  # fmt: skip
    """Rows for each host at the given offsets in seconds from T0, with labels and incident kinds."""
    data = {"host": [], "ts": [], "label": [], "incident": []}
    for host, offsets in hosts.items():
        data["host"] += [host] * len(offsets)
        data["ts"] += [T0 + timedelta(seconds=o) for o in offsets]
        lab = labels[host] if labels else [0] * len(offsets)
        data["label"] += lab
        data["incident"] += kinds[host] if kinds else [f"kind-{host}" if v else None for v in lab]
    out = pl.DataFrame(data, schema_overrides={"label": pl.Int8, "incident": pl.String})
    return out if labels else out.drop("label", "incident")


def grid(n: int, step: float = 5.0) -> list[float]:
    return [i * step for i in range(n)]


def marks(n: int, ones: list[int] | range) -> list[int]:
    return [1 if i in ones else 0 for i in range(n)]


@pytest.fixture
def two_hosts() -> tuple[pl.DataFrame, np.ndarray]:
    """Hosts a and b, 20 rows at 5 s; incident a5-a9 (alarmed at a7, a8), incident b10-b14 (missed).

    Scores: alarmed incident rows 0.9, other incident rows 0.4, benign alarms 0.6 at
    a0, a14, a15, a19 and b0, other benign rows 0.0; the threshold is 0.5.
    """
    rows = frame({"a": grid(20), "b": grid(20)}, {"a": marks(20, range(5, 10)), "b": marks(20, range(10, 15))})
    a, b = np.zeros(20), np.zeros(20)
    a[5:10], a[[7, 8]], a[[0, 14, 15, 19]] = 0.4, 0.9, 0.6
    b[10:15], b[0] = 0.4, 0.6
    return rows, np.concatenate([a, b])


def test_every_metric_by_hand(two_hosts):
    result = evaluate(*two_hosts, threshold=0.5)
    assert (result.rows, result.positives, result.hosts, result.labeled) == (40, 10, 2, True)
    # pairs (positive, negative) ranked right: 2 at 0.9 beat all 30; 8 at 0.4 beat the 25 at 0.0
    assert result.roc_auc == pytest.approx(260 / 300)
    # recall 0.2 at precision 1 (the two 0.9), then recall 1.0 at precision 10/15
    assert result.pr_auc == pytest.approx(0.2 * 1 + 0.8 * 10 / 15)
    # thresholds 0.9: 4/12, 0.6: 4/17, 0.4: 20/25, 0.0: 20/50
    assert result.best_f1 == pytest.approx(0.8)
    assert result.best_f1_threshold == 0.4
    # 7 alarms (2 true), 10 positives: F1 = 2*2 / (7 + 10)
    assert result.f1_at_threshold == pytest.approx(4 / 17)
    assert result.precision_at_threshold == pytest.approx(2 / 7)
    assert result.recall_at_threshold == pytest.approx(0.2)
    assert (result.incidents_detected, result.incidents_total, result.range_recall) == (1, 2, 0.5)
    assert result.median_ttd_s == 10.0  # first alarm a7, incident start a5
    # events a0, a14-a15 (one), a19, b0 (a19 and b0 are adjacent rows but different hosts)
    assert (result.false_alarm_events, result.benign_rows_alarmed) == (4, 5)
    assert result.benign_host_hours == pytest.approx(30 * 5 / 3600)
    assert result.false_alarms_per_host_hour == pytest.approx(96.0)


def test_row_order_does_not_matter(two_hosts):
    rows, scores = two_hosts
    perm = np.random.default_rng(0).permutation(rows.height)
    assert evaluate(rows[perm], scores[perm], 0.5) == evaluate(rows, scores, 0.5)


def test_as_dict_is_json_ready(two_hosts):
    d = evaluate(*two_hosts, threshold=0.5).as_dict()
    assert json.loads(json.dumps(d)) == d
    assert all(v is None or type(v) in (int, float, bool) for v in d.values())
    assert d["median_ttd_s"] == 10.0 and d["incidents_total"] == 2


def test_incident_split_by_gap_but_not_by_two_steps():
    # label 1 on rows 2-7; 20 s gap (4 steps) between rows 4 and 5, 10 s (2 steps) between 6 and 7
    offsets = [0, 5, 10, 15, 20, 40, 45, 55, 60, 65]
    rows = frame({"a": offsets}, {"a": marks(10, range(2, 8))})
    scores = np.zeros(10)
    scores[[3, 7]] = 1.0  # second row of incident 1 (at 15 s, start 10 s); last row of incident 2 (55 s, start 40 s)
    result = evaluate(rows, scores, 0.5)
    assert (result.incidents_total, result.incidents_detected) == (2, 2)
    assert result.median_ttd_s == pytest.approx((5 + 15) / 2)


def test_incidents_split_by_label_drop_and_kind_change():
    labels = marks(12, [2, 3, 5, 6, 7, 8])
    kinds = [None, None, "cpu", "cpu", None, "cpu", "cpu", "exfil", "exfil", None, None, None]
    rows = frame({"a": grid(12)}, {"a": labels}, {"a": kinds})
    scores = np.zeros(12)
    scores[8] = 1.0
    result = evaluate(rows, scores, 0.5)
    assert (result.incidents_total, result.incidents_detected, result.range_recall) == (3, 1, pytest.approx(1 / 3))
    assert result.median_ttd_s == 5.0  # exfil starts at row 7, alarm at row 8


def test_gap_splits_false_alarm_events_and_host_step_sets_hours():
    # host a: 5 s grid with a 30 s hole between alarmed rows 3 and 4; host b: 60 s grid, alarmed rows 1-2
    rows = frame({"a": [0, 5, 10, 15, 45, 50, 55, 60], "b": grid(6, 60.0)})
    scores = np.array([0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0], dtype=float)
    result = evaluate(rows, scores, 1.0)  # alarm is score >= threshold
    assert result.false_alarm_events == 3
    assert result.benign_rows_alarmed == 4
    hours = (8 * 5 + 6 * 60) / 3600
    assert result.benign_host_hours == pytest.approx(hours)
    assert result.false_alarms_per_host_hour == pytest.approx(3 / hours)


def test_unlabeled_rows_still_count_false_alarms():
    rows = frame({"a": grid(10)})
    assert "label" not in rows.columns
    scores = np.zeros(10)
    scores[[1, 2, 6]] = 2.0
    result = evaluate(rows, scores, 1.0)
    assert result.labeled is False and result.positives == 0
    for name in ("roc_auc", "pr_auc", "best_f1", "best_f1_threshold", "f1_at_threshold",
                 "precision_at_threshold", "recall_at_threshold", "range_recall", "median_ttd_s"):  # fmt: skip
        assert getattr(result, name) is None, name
    assert result.false_alarm_events == 2
    assert result.false_alarms_per_host_hour == pytest.approx(2 / (10 * 5 / 3600))


def test_all_zero_labels_match_absent_labels():
    scores = np.linspace(0, 1, 10)
    absent = evaluate(frame({"a": grid(10)}), scores, 0.5)
    zeros = evaluate(frame({"a": grid(10)}, {"a": [0] * 10}), scores, 0.5)
    assert absent == zeros and zeros.roc_auc is None


def test_all_positive_labels_have_no_auc():
    result = evaluate(frame({"a": grid(6)}, {"a": [1] * 6}), np.arange(6.0), 3.0)
    assert result.roc_auc is None and result.pr_auc is None
    assert result.recall_at_threshold == pytest.approx(0.5)
    assert result.false_alarms_per_host_hour is None  # no benign hours to divide by
    assert (result.incidents_total, result.median_ttd_s) == (1, 15.0)


def test_perfect_scores():
    labels = marks(20, range(8, 12))
    result = evaluate(frame({"a": grid(20)}, {"a": labels}), np.array(labels, dtype=float), 0.5)
    assert result.roc_auc == 1.0 and result.pr_auc == 1.0
    assert result.best_f1 == 1.0 and result.f1_at_threshold == 1.0
    assert (result.false_alarm_events, result.median_ttd_s) == (0, 0.0)


def test_no_alarm_gives_zero_f1_and_no_precision(two_hosts):
    result = evaluate(*two_hosts, threshold=5.0)
    assert result.f1_at_threshold == 0.0 and result.precision_at_threshold is None
    assert result.median_ttd_s is None and result.range_recall == 0.0
    assert result.false_alarms_per_host_hour == 0.0


def test_best_f1_tie_takes_the_highest_threshold():
    # ranked labels 1, 0, 0, 1: top-1 gives 2*1/(1+2) and top-4 gives 2*2/(4+2), both 2/3
    rows = frame({"a": grid(4)}, {"a": [1, 0, 0, 1]})
    result = evaluate(rows, np.array([4.0, 3.0, 2.0, 1.0]), 2.5)
    assert result.best_f1 == pytest.approx(2 / 3)
    assert result.best_f1_threshold == 4.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = 300
    labels = (rng.random(n) < 0.2).astype(int)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounding makes ties
    rows = frame({"a": grid(150), "b": grid(150)}, {"a": list(labels[:150]), "b": list(labels[150:])})
    result = evaluate(rows, scores, 0.5)
    assert result.roc_auc == pytest.approx(roc_auc_score(labels, scores))
    assert result.pr_auc == pytest.approx(average_precision_score(labels, scores))
    f1s = {t: f1_score(labels, scores >= t) for t in np.unique(scores)}
    assert result.best_f1 == pytest.approx(max(f1s.values()))
    assert f1s[result.best_f1_threshold] == pytest.approx(result.best_f1)
    assert result.f1_at_threshold == pytest.approx(f1_score(labels, scores >= 0.5))


def test_format_table():
    labeled = evaluate(frame({"a": grid(4)}, {"a": [0, 1, 1, 0]}), np.array([0.1, 0.2, 0.9, 0.3]), 0.5)
    unlabeled = evaluate(frame({"a": grid(4)}), np.zeros(4), 0.5)
    table = format_table({"iforest": labeled, "pca_long_name": unlabeled})
    lines = table.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:3] == ["model", "ROC-AUC", "PR-AUC"] and "FA/host-h" in lines[0]
    assert lines[1].startswith("iforest ") and "0.750" in lines[1]
    assert lines[2].startswith("pca_long_name") and lines[2].split()[1:] == ["-"] * 6 + ["0.00"]
    assert len({len(line) for line in lines}) == 1  # aligned: every column right-justified to its width


@pytest.mark.parametrize(
    ("scores", "threshold", "message"),
    [
        (np.zeros(3), 0.5, "3 scores for 4 rows"),
        (np.array([0.0, np.nan, 1.0, 2.0]), 0.5, "NaN or infinite"),
        (np.array([0.0, np.inf, 1.0, 2.0]), 0.5, "NaN or infinite"),
        (np.zeros(4), float("nan"), "threshold must be a finite number"),
    ],
)
def test_bad_input(scores, threshold, message):
    with pytest.raises(InputError, match=message) as caught:
        evaluate(frame({"a": grid(4)}), scores, threshold)
    assert "\n" not in str(caught.value)


def test_bad_labels_and_columns():
    rows = frame({"a": grid(4)}, {"a": [0, 2, 1, 0]})
    with pytest.raises(InputError, match="label must be 0 or 1"):
        evaluate(rows, np.zeros(4), 0.5)
    with pytest.raises(InputError, match="lack column"):
        evaluate(rows.drop("ts"), np.zeros(4), 0.5)


def test_evaluation_is_frozen(two_hosts):
    result = evaluate(*two_hosts, threshold=0.5)
    assert isinstance(result, Evaluation)
    with pytest.raises(AttributeError):
        result.roc_auc = 0.0  # type: ignore[misc]
