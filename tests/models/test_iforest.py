"""Isolation Forest: the path-length attribution is exact, picks the isolating feature, and is not "largest value"."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from amoskys.models.iforest import IsolationForestDetector, average_path_length, path_length_attribution

from .conftest import assert_onnx_parity, fit, make_detector


def gaussian_frame(rng: np.random.Generator, rows: int, columns: int = 6) -> pl.DataFrame:
    return pl.DataFrame({f"f{j}": rng.normal(size=rows) for j in range(columns)})


def test_contributions_add_up_to_the_path_shortening_behind_the_score(fleet_train, fleet_test):
    detector = fit(make_detector("iforest"), fleet_train.frame)
    matrix = detector._matrix(fleet_test.frame)
    expected_path = average_path_length(detector.forest_.max_samples_)
    # score = 2 ** (-E[h] / c(psi)) and the contributions sum to c(psi) - E[h]
    mean_path = expected_path - path_length_attribution(detector.forest_, matrix).sum(axis=1)
    np.testing.assert_allclose(2 ** (-mean_path / expected_path), detector.score_samples(fleet_test.frame), rtol=1e-12)


def test_trees_on_feature_subsets_are_walked_on_their_own_columns():
    # the detector uses every feature per tree; a forest on feature subsets exercises estimators_features_
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(400, 5))
    forest = IsolationForest(n_estimators=20, max_features=0.6, random_state=0).fit(matrix)
    assert len(forest.estimators_features_[0]) == 3
    expected_path = average_path_length(forest.max_samples_)
    mean_path = expected_path - path_length_attribution(forest, matrix).sum(axis=1)
    np.testing.assert_allclose(2 ** (-mean_path / expected_path), -forest.score_samples(matrix))


def test_the_feature_that_isolates_a_row_ranks_first():
    rng = np.random.default_rng(4)
    detector = IsolationForestDetector(n_estimators=50).fit(gaussian_frame(rng, 500))
    rows = gaussian_frame(rng, 60).to_numpy()
    shifted = np.arange(60) % 6
    rows[np.arange(60), shifted] += rng.choice([-5.0, 5.0], 60)  # one feature 5 standard deviations off per row
    explanations = detector.explain(pl.DataFrame(rows, schema=[f"f{j}" for j in range(6)], orient="row"), top_k=1)
    assert np.mean([row[0].feature == f"f{j}" for row, j in zip(explanations, shifted)]) >= 0.85


def test_a_large_but_common_value_is_not_blamed():
    # "bursty" sits far from its median in 20% of the training rows; "steady" at +4 sd is rare
    rng = np.random.default_rng(0)
    bursty = np.where(rng.random(1000) < 0.2, rng.normal(12, 1, 1000), rng.normal(0, 1, 1000))
    train = pl.DataFrame({"bursty": bursty, "steady": rng.normal(size=1000), "other": rng.normal(size=1000)})
    detector = IsolationForestDetector(n_estimators=50).fit(train)
    row = pl.DataFrame({"bursty": [12.0], "steady": [4.0], "other": [0.0]})
    scaled = detector._matrix(row)[0]
    assert scaled[0] > 2 * scaled[1]  # the largest value, in training units, is bursty's
    assert [part.feature for part in detector.explain(row, top_k=2)[0]] == ["steady", "bursty"]


def test_onnx_export_matches_native_scores(fleet_train, fleet_test, tmp_path):
    # 10 trees: skl2onnx takes seconds per 50 trees (its graph clean-up grows faster than linearly)
    assert_onnx_parity(fit(make_detector("iforest", n_estimators=10), fleet_train.frame), fleet_test.frame, tmp_path)


def test_compiled_scores_equal_scikit_learns(fleet_train, fleet_test):
    detector = fit(make_detector("iforest"), fleet_train.frame)
    sklearn_scores = -detector.forest_.score_samples(detector._matrix(fleet_test.frame))
    np.testing.assert_allclose(detector.score_samples(fleet_test.frame), sklearn_scores, rtol=1e-12)  # summed in another order
