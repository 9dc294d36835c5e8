"""Robust PCA detector: a row is anomalous when the training data's main directions cannot rebuild it.

Normal telemetry is correlated (CPU, load and process count rise together), so the
scaled rows lie near a low-dimensional subspace. The detector keeps the fewest principal
components that explain ``variance_share`` of the training variance (at most
features - 1, so that some residual is left to measure) and scores a row by its squared
reconstruction error, the squared distance to that subspace; each feature's share is its
own squared residual, so the explanation names the features that broke the usual
correlations.

Robustness: training data holds anomalies too, and a big enough group of them pulls a
component towards itself (or adds one) and then reconstructs well. So the fit is repeated
``refits`` times, each time on the rows that were at most the ``trim_quantile`` of the
previous fit on two distances: the reconstruction error (distance to the subspace) and
the score distance (Mahalanobis distance within the subspace). Trimming on the error
alone is not enough: anomalies a component has absorbed have small errors, but they sit
far out along that component. The result is deterministic (SVD, no sampling); ``seed``
is kept for the common contract only.

Threshold and calibration come from out-of-fold errors (``_normal_scores``): a
subspace rebuilds the rows it was fitted on better than new ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from amoskys.models.base import Detector, time_folds

OOF_BLOCK_ROWS = 10  # consecutive rows per out-of-fold block (``_normal_scores``)


def principal_components(matrix: np.ndarray, variance_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components): the mean row and the fewest leading components, one per row, explaining variance_share.

    >>> rng = np.random.default_rng(0)
    >>> line = rng.normal(size=(200, 1)) @ np.array([[1.0, 2.0, -1.0]]) + rng.normal(scale=0.01, size=(200, 3))
    >>> principal_components(line, 0.95)[1].shape
    (1, 3)
    """
    mean = matrix.mean(axis=0)
    centered = matrix - mean
    # The eigenvectors of the (features x features) scatter matrix: the SVD of the centred rows gives the
    # same directions, several times slower on many rows.
    eigenvalues, eigenvectors = np.linalg.eigh(centered.T @ centered)
    order = np.argsort(eigenvalues, kind="stable")[::-1]
    variance, directions = np.clip(eigenvalues[order], 0.0, None), eigenvectors[:, order].T
    explained = np.cumsum(variance) / variance.sum() if variance.sum() > 0 else np.ones_like(variance)
    wanted = int(np.searchsorted(explained, variance_share)) + 1  # the first count reaching the share
    return mean, directions[: min(wanted, matrix.shape[1] - 1)]


class PcaDetector(Detector):
    """Squared distance to the (robustly fitted) principal subspace of the training rows."""

    name = "pca"

    def __init__(self, variance_share: float = 0.95, trim_quantile: float = 0.95, refits: int = 2,
                 threshold_quantile: float = 0.99, seed: int = 0):  # fmt: skip
        super().__init__(threshold_quantile=threshold_quantile, seed=seed)
        self.variance_share = variance_share
        self.trim_quantile = trim_quantile
        self.refits = refits

    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        kept = matrix
        self._fit_subspace(kept)
        for _ in range(self.refits):
            error = self._score(kept, X)
            coordinates = (kept - self.mean_) @ self.components_.T
            score_distance = (coordinates**2 / np.maximum(coordinates.var(axis=0), 1e-12)).sum(axis=1)
            typical = (error <= np.quantile(error, self.trim_quantile)) & (
                score_distance <= np.quantile(score_distance, self.trim_quantile))  # fmt: skip
            if typical.sum() < 2:  # a tiny training set: nothing left to refit on
                break
            kept = kept[typical]
            self._fit_subspace(kept)
        self.fitted_rows_ = len(kept)  # rows the final subspace was fitted on

    def _fit_subspace(self, rows: np.ndarray) -> None:
        self.mean_, self.components_ = principal_components(rows, self.variance_share)

    def _normal_scores(self, X: pl.DataFrame, y: np.ndarray | None, normal: pl.DataFrame) -> np.ndarray:
        """Out-of-fold errors of the normal training rows: blocks of each host's rows, every other one scored by
        a subspace fitted on the rest. A subspace rebuilds the rows it was fitted on better than new ones, the
        more so with few rows for many features (a short baseline), and a threshold from those errors flags
        ordinary new rows. (Interleaved blocks, not halves: a subspace of one half of a day misses the other
        half's regime, and a threshold from that missed incidents.)"""
        matrix, fold = self._matrix(normal), time_folds(normal, 2, block=OOF_BLOCK_ROWS)
        scores = np.empty(len(matrix))
        for held_out in (fold == 0, fold == 1):
            if (~held_out).sum() < 2 or not held_out.any():  # too few rows to split
                return self._score(matrix, normal)
            other = PcaDetector(self.variance_share, self.trim_quantile, self.refits)
            other._fit(matrix[~held_out], normal, None)
            scores[held_out] = other._score(matrix[held_out], normal)
        return scores

    def _residuals(self, matrix: np.ndarray) -> np.ndarray:
        """The part of each row the components do not explain: (x - mean) less its projection on them. (Through
        the few components, not a features x features projector: a live micro-batch's costliest product.)"""
        centered = matrix - self.mean_
        return centered - (centered @ self.components_.T) @ self.components_

    def _score(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        return (self._residuals(matrix) ** 2).sum(axis=1)

    def _contributions(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        return self._residuals(matrix) ** 2

    def export_onnx(self, path: Path) -> Path:
        """Write the score function (scaled float32 matrix in, score out) to path, built from ONNX matrix ops."""
        from onnx import TensorProto, helper, numpy_helper

        from amoskys.models import onnx_export

        self._check_fitted()
        n_features = len(self.features_)
        constants = [numpy_helper.from_array(self.mean_.astype(np.float32), "mean"),
                     numpy_helper.from_array(self.components_.T.astype(np.float32), "to_components"),
                     numpy_helper.from_array(self.components_.astype(np.float32), "from_components"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "feature_axis")]  # fmt: skip
        nodes = [  # as _residuals
            helper.make_node("Sub", [onnx_export.INPUT, "mean"], ["centered"]),
            helper.make_node("MatMul", ["centered", "to_components"], ["coordinates"]),
            helper.make_node("MatMul", ["coordinates", "from_components"], ["explained"]),
            helper.make_node("Sub", ["centered", "explained"], ["residual"]),
            helper.make_node("Mul", ["residual", "residual"], ["squared"]),
            helper.make_node("ReduceSum", ["squared", "feature_axis"], [onnx_export.OUTPUT], keepdims=0),
        ]
        graph = helper.make_graph(
            nodes, "pca_reconstruction_error",
            [helper.make_tensor_value_info(onnx_export.INPUT, TensorProto.FLOAT, [None, n_features])],
            [helper.make_tensor_value_info(onnx_export.OUTPUT, TensorProto.FLOAT, [None])], constants,
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)])
        return onnx_export.save(model, path)
