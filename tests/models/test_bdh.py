"""The BDH ensemble beyond the shared contract: calibration, fusion weights, rules, member reuse, assessments."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from amoskys.models import get
from amoskys.models.calibration import TailCalibration, level, threat_score
from amoskys.models.rules import DEFAULT_RULES, Rule

from .conftest import FAST_PARAMS, make_detector

FAST_BDH = {"members": ("iforest", "pca"), "member_params": {n: FAST_PARAMS[n] for n in ("iforest", "pca")}}


def test_surprise_is_rarity_among_training_scores():
    calibration = TailCalibration().fit(np.arange(10_000.0))
    surprise = calibration.surprise(np.array([0.0, 9_000.0, 9_900.0, 9_990.0, 9_999.0]))
    assert surprise == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0], abs=0.05)
    assert np.all(np.diff(calibration.surprise(np.linspace(-10, 20_000, 500))) >= 0)  # monotone, past the top too


def test_a_score_tied_with_many_training_scores_is_not_surprising():
    calibration = TailCalibration().fit(np.r_[np.zeros(900), np.arange(1.0, 101.0)])
    assert calibration.surprise(np.array([0.0]))[0] == 0.0


def test_threat_bands():
    assert threat_score(np.array([0.5, 2.0, 3.0, 4.0, 4.6, 9.0])) == pytest.approx([0, 25, 50, 75, 90, 100])
    assert [level(s) for s in (0, 24.9, 25, 49.9, 50, 74.9, 75, 89.9, 90, 100)] == [
        "benign", "benign", "low", "low", "medium", "medium", "high", "high", "critical", "critical"]  # fmt: skip


def test_members_given_fitted_are_reused_not_refitted(fleet_train):
    iforest = make_detector("iforest").fit(fleet_train.frame)
    ensemble = get("bdh", members=("iforest", "pca"), member_params=FAST_BDH["member_params"],
                   prefit={"iforest": iforest}).fit(fleet_train.frame)  # fmt: skip
    assert ensemble.members_["iforest"] is iforest
    assert ensemble.members_["pca"].threshold_ > 0


def test_weights_are_equal_without_labels_and_follow_precision_with_them(fleet_train):
    unlabeled = get("bdh", **FAST_BDH).fit(fleet_train.frame)
    assert unlabeled.weights_ == {"iforest": 0.5, "pca": 0.5}
    labeled = get("bdh", **FAST_BDH).fit(fleet_train.frame, fleet_train.labels)
    assert sum(labeled.weights_.values()) == pytest.approx(1.0)
    assert set(labeled.weights_) == {"iforest", "pca"}


def test_a_rule_lifts_the_threat_and_is_named(fleet_train, fleet_test):
    scan = Rule("scan", "many failed logins", (("auth_failures", 1e6),), floor=80.0)
    ensemble = get("bdh", rules=(scan,), **FAST_BDH).fit(fleet_train.frame)
    rows = fleet_test.frame.head(3).with_columns(pl.Series("auth_failures", [0.0, 2e6, None]))
    assessed = [ensemble.assess(rows, top_k=2).row(i) for i in range(3)]
    assert assessed[1]["rules"] == ["scan"] and assessed[1]["threat"] >= 80.0
    assert assessed[1]["level"] in ("high", "critical")
    assert assessed[0]["rules"] == [] and assessed[2]["rules"] == []  # a null feature never fires a rule
    assert set(assessed[0]["members"]) == {"iforest", "pca"} and len(assessed[0]["features"]) == 2


def test_incidents_reach_a_higher_threat_than_normal_rows(fleet_train, fleet_test):
    # with labels the calibration sees benign rows only; without, the fleet's 10% of incidents would count as usual
    ensemble = get("bdh", **FAST_BDH).fit(fleet_train.frame, fleet_train.labels)
    threat = ensemble.threat_scores(fleet_test.frame)
    labels = fleet_test.labels.astype(bool)
    assert 0 <= threat.min() and threat.max() <= 100
    assert np.median(threat[labels]) >= 50 > np.median(threat[~labels])


def test_default_rules_stay_silent_without_the_security_pack(fleet_test):
    assert all(not rule.fires(fleet_test.frame).any() for rule in DEFAULT_RULES)


def test_a_rule_fires_where_every_bound_is_reached_never_on_null_nan_or_a_missing_feature():
    frame = pl.DataFrame({"a": [5.0, 5.0, None, float("nan"), 2.0], "b": [1, 0, 1, 1, 1]})
    assert Rule("r", "", (("a", 2.0), ("b", 1.0))).fires(frame).tolist() == [True, False, False, False, True]
    assert Rule("s", "", (("a", 0.0), ("absent", 0.0))).fires(frame).tolist() == [False] * 5
