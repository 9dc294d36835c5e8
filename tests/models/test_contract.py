"""The contract every detector keeps (``amoskys.models.base``), checked for each name in ``conftest.DETECTORS``.

Unsupervised detectors are fitted on the rows alone, supervised ones with the fleet's labels
(``conftest.fit``). Tests that only read a fitted detector share one per name (``fitted_detector``).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from amoskys.errors import InputError, ModelError
from amoskys.models import Contribution, detector_class

from .conftest import FEATURES, fit, make_detector


def with_bad_values(frame: pl.DataFrame) -> pl.DataFrame:
    """frame with nulls in cpu_pct (rows 0-4), NaN in mem_pct (5-9) and +-inf in load_1m (10-14)."""
    row = pl.int_range(pl.len())
    return frame.with_columns(
        pl.when(row < 5).then(None).otherwise(pl.col("cpu_pct")).alias("cpu_pct"),
        pl.when(row.is_between(5, 9)).then(float("nan")).otherwise(pl.col("mem_pct")).alias("mem_pct"),
        pl.when(row.is_between(10, 12)).then(float("inf"))
        .when(row.is_between(13, 14)).then(float("-inf")).otherwise(pl.col("load_1m")).alias("load_1m"),
    )  # fmt: skip


def test_fit_and_score_shapes(fitted_detector, fleet_test):
    assert fitted_detector.features_ == FEATURES  # host, ts and label are never features
    scores = fitted_detector.score_samples(fleet_test.frame)
    assert scores.shape == (fleet_test.frame.height,) and scores.dtype == np.float64 and np.isfinite(scores).all()
    flags = fitted_detector.predict(fleet_test.frame)
    assert flags.shape == scores.shape and flags.dtype == np.int8 and set(np.unique(flags)) <= {0, 1}
    assert fitted_detector.score_samples(fleet_test.frame.head(0)).shape == (0,)


def test_injected_anomalies_score_higher(fitted_detector, fleet_test):
    # a quality floor on a held-out frame: every incident moves three features by 6 standard deviations
    assert roc_auc_score(fleet_test.labels, fitted_detector.score_samples(fleet_test.frame)) >= 0.9


def test_same_seed_gives_the_same_scores(detector_name, fleet_train, fleet_test):
    first, second = (fit(make_detector(detector_name, seed=7), fleet_train.frame) for _ in range(2))
    np.testing.assert_array_equal(first.score_samples(fleet_test.frame), second.score_samples(fleet_test.frame))
    assert first.threshold_ == second.threshold_


def test_save_and_load_give_the_same_scores(detector_name, fitted_detector, fleet_test, tmp_path):
    written = fitted_detector.save(tmp_path / "model")
    assert written and all(path.exists() for path in written)
    loaded = detector_class(detector_name).load(tmp_path / "model")
    assert type(loaded) is type(fitted_detector) and loaded.threshold_ == fitted_detector.threshold_
    frame = fleet_test.frame
    np.testing.assert_array_equal(loaded.score_samples(frame), fitted_detector.score_samples(frame))
    with pytest.raises(ModelError, match="cannot load"):
        detector_class(detector_name).load(tmp_path / "nothing here")


def test_missing_features_are_named(fitted_detector, fleet_test):
    partial = fleet_test.frame.drop("cpu_pct", "dns_queries")
    for call in (fitted_detector.score_samples, fitted_detector.predict, fitted_detector.explain):
        with pytest.raises(InputError, match=r"2 feature\(s\).*cpu_pct, dns_queries"):
            call(partial)


def test_threshold_comes_from_training_scores_only(fitted_detector, fleet_train, fleet_test):
    quantile, threshold = fitted_detector.threshold_quantile, fitted_detector.threshold_
    # a detector fitted with labels takes its threshold from the benign training rows (a classifier: their
    # out-of-fold scores, as the rows it learned from score near 0)
    labels = fleet_train.labels if fitted_detector.needs_labels else None
    normal = fleet_train.frame.filter(pl.col("label") == 0) if labels is not None else fleet_train.frame
    train_scores = fitted_detector._normal_scores(fleet_train.frame, labels, normal)
    assert threshold == pytest.approx(np.quantile(train_scores, quantile), rel=1e-12)
    for validation in (fleet_test.frame, with_bad_values(fleet_test.frame), fleet_test.frame.head(10)):
        fitted_detector.predict(validation)
        assert fitted_detector.threshold_ == threshold
    # about 1 - q of the normal training scores reach it; tied scores (a classifier's saturated
    # probabilities) all fall on one side, so bound the share strictly above and at-or-above
    slack = 2 / len(train_scores)
    assert (train_scores > threshold).mean() <= 1 - quantile + slack
    assert (train_scores >= threshold).mean() >= 1 - quantile - slack


def test_given_labels_an_unsupervised_detector_learns_from_the_benign_rows_only(detector_name, fleet_train, fleet_test):
    detector = make_detector(detector_name)
    if detector.needs_labels or not detector.novelty:
        pytest.skip("learns from every labeled row (supervised, or weighs its members with the labels)")
    with_labels = make_detector(detector_name).fit(fleet_train.frame, fleet_train.labels)
    benign_only = make_detector(detector_name).fit(fleet_train.frame.filter(pl.col("label") == 0))
    assert np.array_equal(with_labels.score_samples(fleet_test.frame), benign_only.score_samples(fleet_test.frame))
    assert with_labels.threshold_ == benign_only.threshold_


def test_explain_gives_top_k_contributions_with_typical_ranges(fitted_detector, fleet_test):
    rows = fleet_test.frame.head(6)
    explanations = fitted_detector.explain(rows, top_k=4)
    assert len(explanations) == rows.height
    for i, row in enumerate(explanations):
        assert len(row) == 4 and all(isinstance(part, Contribution) for part in row)
        assert len({part.feature for part in row}) == 4 and {part.feature for part in row} <= set(FEATURES)
        assert [part.contribution for part in row] == sorted((part.contribution for part in row), reverse=True)
        for part in row:
            assert part.value == pytest.approx(rows[part.feature][i])
            assert part.typical_low <= part.typical_median <= part.typical_high
            assert set(part.as_dict()) == {"feature", "contribution", "value", "typical", "median"}
    assert len(fitted_detector.explain(rows, top_k=50)[0]) == len(FEATURES)


def test_explanations_name_the_features_an_incident_moved(fitted_detector, fleet_test):
    incident_rows = np.flatnonzero(fleet_test.labels == 1)
    explanations = fitted_detector.explain(fleet_test.frame[incident_rows], top_k=5)
    named = [{part.feature for part in row} for row in explanations]
    moved = [[FEATURES[j] for j in np.flatnonzero(fleet_test.shifted[i])] for i in incident_rows]
    # each incident moves 3 of 10 features: by chance a moved feature is in a top 5 half of
    # the time, and is the top feature 30% of the time
    in_top_5 = np.mean([feature in top for top, features in zip(named, moved) for feature in features])
    first_is_moved = np.mean([row[0].feature in features for row, features in zip(explanations, moved)])
    assert in_top_5 >= 0.8 and first_is_moved >= 0.6, (in_top_5, first_is_moved)


def test_unfitted_detector_raises_model_error(detector_name, fleet_test, tmp_path):
    detector = make_detector(detector_name)
    assert not [name for name in vars(detector) if name.endswith("_")]  # constructors only store their arguments
    for call in (detector.score_samples, detector.predict, detector.explain):
        with pytest.raises(ModelError, match="not fitted"):
            call(fleet_test.frame)
    with pytest.raises(ModelError, match="not fitted"):
        detector.save(tmp_path)


def test_missing_and_non_finite_values_are_filled(detector_name, fleet_train, fleet_test):
    detector = fit(make_detector(detector_name), with_bad_values(fleet_train.frame))
    dirty = with_bad_values(fleet_test.frame)
    scores = detector.score_samples(dirty)
    assert np.isfinite(scores).all() and np.isfinite(detector.threshold_)
    explanations = detector.explain(dirty.head(15), top_k=len(FEATURES))
    assert all(np.isfinite(part.contribution) for row in explanations for part in row)
    values = [{part.feature: part.value for part in row} for row in explanations]
    assert all(values[i]["cpu_pct"] is None for i in range(5))
    assert all(values[i]["mem_pct"] is None for i in range(5, 10))
    assert all(values[i]["load_1m"] is None for i in range(10, 15))


def test_unusable_training_frames_are_refused(detector_name, fleet_train):
    with pytest.raises(InputError, match="no feature columns"):
        fit(make_detector(detector_name), fleet_train.frame.select("host", "ts", "label"))
    with pytest.raises(InputError, match="at least 2 training rows"):
        fit(make_detector(detector_name), fleet_train.frame.head(1))
