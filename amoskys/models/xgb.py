"""Supervised detector: gradient-boosted trees (XGBoost) on labeled rows.

Where labels exist (simulator or scenario labels, analyst feedback) a classifier beats
any unsupervised model on the kinds of incident it has seen, and misses the kinds it has
not: that is why it runs next to the unsupervised detectors, not instead of them.
``fit`` refuses without labels of both classes (the base class checks).

Anomalies are rare, so the positive class is weighted by negatives / positives
(``scale_pos_weight``). The score is the predicted probability of the anomalous class.
Explanations are XGBoost's own exact tree SHAP values (``pred_contribs``), in log-odds:
the features that pushed the row towards "anomalous" rank first; the bias column is
dropped. Training uses ``threads`` (2) threads and a fixed seed; the hist method is
deterministic. On a busy 2-core machine 2 threads can be far slower than 1 (each of the
many small parallel steps waits for a descheduled thread): small jobs may pass threads=1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from xgboost import DMatrix, XGBClassifier

from amoskys.models.base import Detector, time_folds


PARALLEL_ROWS = 20_000  # fewer rows are scored (and explained) on one thread
OOF_FOLDS = 2


class XGBoostDetector(Detector):
    """XGBoost classifier of normal (0) against anomalous (1) rows."""

    name = "xgboost"
    needs_labels = True

    def __init__(self, n_estimators: int = 100, max_depth: int = 4, learning_rate: float = 0.2,
                 threads: int = 2, threshold_quantile: float = 0.99, seed: int = 0):  # fmt: skip
        super().__init__(threshold_quantile=threshold_quantile, seed=seed)
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.threads = threads

    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        self.model_ = self._classifier(y).fit(matrix, y)

    def _classifier(self, y: np.ndarray) -> XGBClassifier:
        positives = int(y.sum())
        return XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            scale_pos_weight=(len(y) - positives) / positives, tree_method="hist", n_jobs=self.threads,
            # half the features per tree: twice as fast on 250+ correlated features, and less overfitting
            colsample_bytree=0.5, random_state=self.seed, eval_metric="logloss",
        )  # fmt: skip

    def _normal_scores(self, X: pl.DataFrame, y: np.ndarray | None, normal: pl.DataFrame) -> np.ndarray:
        """Out-of-fold scores of the benign training rows: a classifier scores the rows it learned from
        near 0, so a threshold or calibration from those would flag ordinary new rows.

        Each host's rows are cut into ``OOF_FOLDS`` consecutive time blocks; fold k (block k of
        every host) is scored by a model trained on the other folds.
        """
        matrix = self._matrix(X)
        fold = time_folds(X, OOF_FOLDS)
        scores = np.empty(X.height)
        for k in range(OOF_FOLDS):
            held_out = fold == k
            if len(np.unique(y[~held_out])) < 2:  # too few labels elsewhere: fall back to the full model
                scores[held_out] = self._score(matrix[held_out], X)
                continue
            model = self._classifier(y[~held_out]).fit(matrix[~held_out], y[~held_out])
            scores[held_out] = _probability(model, matrix[held_out])
        return scores[y == 0]

    def _score(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        self._predict_on(len(matrix))
        return _probability(self.model_, matrix)

    def _contributions(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        threads = self._predict_on(len(matrix))
        shap = self.model_.get_booster().predict(DMatrix(matrix, nthread=threads), pred_contribs=True)
        return shap[:, :-1]  # the last column is the bias, the same for every row

    def _predict_on(self, rows: int) -> int:
        """Set (and return) the threads to predict rows with: a live micro-batch on one, as waking a second cost
        ten times the prediction (300 rows: 9 ms on two threads, 0.7 ms on one)."""
        threads = 1 if rows < PARALLEL_ROWS else self.threads
        if self.model_.n_jobs != threads:  # (setting it costs a live micro-batch about as much as predicting)
            self.model_.set_params(n_jobs=threads)
        return threads

    def export_onnx(self, path: Path) -> Path:
        """Write the score function (scaled float32 matrix in, probability of class 1 out) to path, with onnxmltools."""
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        from amoskys.models import onnx_export

        self._check_fitted()
        inputs = [(onnx_export.INPUT, FloatTensorType([None, len(self.features_)]))]
        model = convert_xgboost(self.model_, initial_types=inputs, target_opset=onnx_export.OPSET)
        return onnx_export.save(onnx_export.score_output(model, "probabilities", column=1), path)


def _probability(classifier, matrix: np.ndarray) -> np.ndarray:
    """The probability of class 1 of each row: predict_proba's own value, from the booster (the wrapper's checks
    and configuration cost a live micro-batch more than the prediction)."""
    return classifier.get_booster().inplace_predict(matrix, validate_features=False)
