"""PCA: the robust refit keeps incidents out of the subspace; component count; score = sum of contributions."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from amoskys.models.base import time_folds
from amoskys.models.pca import OOF_BLOCK_ROWS, PcaDetector

from .conftest import FACTORS, assert_onnx_parity, make_detector


def test_robust_refit_keeps_incidents_out_of_the_subspace(fleet_train, fleet_test):
    # 10% of the training rows are incidents: one plain fit gives some of them components of their own
    plain = make_detector("pca", refits=0).fit(fleet_train.frame)
    robust = make_detector("pca").fit(fleet_train.frame)
    clean = make_detector("pca").fit(fleet_train.frame.filter(pl.col("label") == 0))
    assert len(plain.components_) > FACTORS == len(robust.components_) == len(clean.components_)
    assert robust.fitted_rows_ < fleet_train.frame.height
    # the same subspace as without the incidents: the residual projectors agree
    assert np.linalg.norm(_projector(robust) - _projector(clean), ord=2) < 0.1
    auc = {name: roc_auc_score(fleet_test.labels, model.score_samples(fleet_test.frame))
           for name, model in (("plain", plain), ("robust", robust))}  # fmt: skip
    assert auc["robust"] >= 0.99 and auc["robust"] > auc["plain"] + 0.1, auc


def test_components_explain_the_variance_share_but_leave_a_residual():
    rng = np.random.default_rng(5)
    independent = pl.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    assert len(PcaDetector(variance_share=0.999).fit(independent).components_) == 1  # at most features - 1
    one_feature = PcaDetector().fit(independent.select("a"))  # no component at all: the squared scaled deviation
    assert one_feature.components_.shape == (0, 1)
    deviation = one_feature._matrix(independent)[:, 0] - one_feature.mean_[0]
    np.testing.assert_allclose(one_feature.score_samples(independent), deviation**2)


def test_score_is_the_sum_of_per_feature_squared_errors(fleet_train, fleet_test):
    detector = make_detector("pca").fit(fleet_train.frame)
    matrix = detector._matrix(fleet_test.frame)
    np.testing.assert_allclose(detector._contributions(matrix, fleet_test.frame).sum(axis=1),
                               detector.score_samples(fleet_test.frame))  # fmt: skip


def test_onnx_export_matches_native_scores(fleet_train, fleet_test, tmp_path):
    assert_onnx_parity(make_detector("pca").fit(fleet_train.frame), fleet_test.frame, tmp_path)


def test_threshold_comes_from_errors_of_rows_the_subspace_did_not_see():
    # few rows for many noisy features, as a short baseline: a subspace rebuilds the rows it was fitted on
    # better than new ones, so a threshold from those errors flagged ordinary new rows
    rng = np.random.default_rng(9)
    frame = pl.DataFrame(rng.normal(size=(90, 4)) @ rng.normal(size=(4, 120)) + rng.normal(scale=2.0, size=(90, 120)),
                         schema=[f"f{j}" for j in range(120)]).with_columns(host=pl.lit("h"))  # fmt: skip
    detector = PcaDetector().fit(frame, features=[f"f{j}" for j in range(120)])
    matrix, fold = detector._matrix(frame), time_folds(frame, 2, block=OOF_BLOCK_ROWS)
    other = PcaDetector()
    other._fit(matrix[fold == 1], frame, None)  # fold 0's errors: from a subspace of fold 1 alone
    np.testing.assert_allclose(detector._normal_scores(frame, None, frame)[fold == 0],
                               other._score(matrix[fold == 0], frame), rtol=1e-12)  # fmt: skip
    assert detector.threshold_ > np.quantile(detector.score_samples(frame), detector.threshold_quantile)


def _projector(model) -> np.ndarray:
    """The projection onto the complement of model's subspace: equal for equal subspaces, whatever their bases."""
    return np.eye(model.components_.shape[1]) - model.components_.T @ model.components_
