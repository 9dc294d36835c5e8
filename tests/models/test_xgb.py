"""XGBoost: refuses unusable labels with a clear message, weights the rare class, explains with its own SHAP values."""

from __future__ import annotations

import numpy as np
import pytest
from xgboost import DMatrix

from amoskys.errors import InputError
from amoskys.models.xgb import XGBoostDetector

from .conftest import assert_onnx_parity, fit, make_detector


@pytest.mark.parametrize("labels, message", [
    (None, "supervised and the data has no labels"),
    ("zeros", "needs both normal and anomalous labeled rows; the labels hold only 0"),
    ("ones", "needs both normal and anomalous labeled rows; the labels hold only 1"),
    ("twos", r"labels must be 0 \(normal\) or 1 \(anomalous\), got \[0.0, 2.0\]"),
    ("short", "10 labels for 1200 rows"),
])  # fmt: skip
def test_unusable_labels_are_refused(fleet_train, labels, message):
    rows = fleet_train.frame.height
    y = {None: None, "zeros": np.zeros(rows), "ones": np.ones(rows), "twos": fleet_train.labels * 2,
         "short": fleet_train.labels[:10]}[labels]  # fmt: skip
    with pytest.raises(InputError, match=message):
        make_detector("xgboost").fit(fleet_train.frame, y)


def test_the_rare_class_is_weighted(fleet_train):
    detector = fit(make_detector("xgboost"), fleet_train.frame)
    positives = int(fleet_train.labels.sum())
    weight = detector.model_.get_params()["scale_pos_weight"]
    assert weight == pytest.approx((len(fleet_train.labels) - positives) / positives) and weight > 1


def test_contributions_are_shap_values_without_the_bias(fleet_train, fleet_test):
    detector = fit(make_detector("xgboost"), fleet_train.frame)
    matrix = detector._matrix(fleet_test.frame)
    contributions = detector._contributions(matrix, fleet_test.frame)
    assert contributions.shape == matrix.shape
    # SHAP values plus one shared bias add up to the log-odds of the score
    margin = detector.model_.get_booster().predict(DMatrix(matrix), output_margin=True)
    bias = margin - contributions.sum(axis=1)
    np.testing.assert_allclose(bias, bias[0], atol=1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), detector.score_samples(fleet_test.frame), atol=1e-6)


def test_two_threads_are_deterministic(fleet_train, fleet_test):
    first, second = (XGBoostDetector(n_estimators=20, seed=3).fit(fleet_train.frame, fleet_train.labels)
                     for _ in range(2))  # fmt: skip
    assert first.threads == 2
    np.testing.assert_array_equal(first.score_samples(fleet_test.frame), second.score_samples(fleet_test.frame))


def test_onnx_export_matches_native_scores(fleet_train, fleet_test, tmp_path):
    assert_onnx_parity(fit(make_detector("xgboost"), fleet_train.frame), fleet_test.frame, tmp_path)
