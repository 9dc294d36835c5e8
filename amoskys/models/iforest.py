"""Isolation Forest detector, explained by per-feature path-length attribution.

An isolation tree splits a random feature at a random value until each training row
stands alone; anomalies are isolated in few splits. scikit-learn scores a row by its
path length averaged over the trees, ``h(x) = depth + c(n_leaf)``, where ``c(n)`` is the
average path length of an unsuccessful search in a binary search tree of n keys: the
expected depth still needed to isolate one of n rows. The detector's score is
``-IsolationForest.score_samples = 2 ** (-E[h(x)] / c(psi))`` with psi the subsample
size: higher = isolated sooner = more anomalous.

Attribution. A row's path from the root (``c(psi)`` expected steps to go) to its leaf
telescopes: ``c(psi) - h(x) = sum over the splits on its path of (c(n_node) - 1 - c(n_child))``.
Each term is how much that one split shortened the path against what the node's
``n_node`` rows led one to expect: near ``c(n_node) - 1`` when the split cuts the row off
almost alone, negative when it sends the row to the bigger side. Crediting each term to
the split's feature and averaging over the trees gives contributions that add up exactly
to ``c(psi) - E[h(x)]``, the quantity the score is a monotone function of; the features
that isolate a row get the largest shares. This is not "largest raw values": a feature
far from its median but never used to cut the row off earns nothing.

The walk is compiled (``_attribute``): each row down each tree, over the trees' nodes
laid out as flat arrays (``flat_trees``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.ensemble import IsolationForest

from amoskys.models.base import Detector
from amoskys.pipeline.jit import njit
from amoskys.pipeline.outlier_scores import Forest

LEAF = -1  # sklearn's children_left for a leaf


def average_path_length(n_rows: np.ndarray) -> np.ndarray:
    """c(n): the expected path length to isolate one row among n (0 for n <= 1, 1 for n = 2).

    >>> average_path_length(np.array([1, 2, 256])).round(3).tolist()
    [0.0, 1.0, 10.245]
    """
    n = np.asarray(n_rows, dtype=np.float64)
    longer = 2.0 * (np.log(np.maximum(n - 1.0, 1.0)) + np.euler_gamma) - 2.0 * (n - 1.0) / np.maximum(n, 1.0)
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, longer))


def path_length_attribution(forest: IsolationForest, matrix: np.ndarray, trees: tuple | None = None) -> np.ndarray:
    """(rows, features): each feature's share of how much sooner than expected the forest isolates each row
    (trees: ``flat_trees(forest)``, when the caller keeps them)."""
    trees = flat_trees(forest) if trees is None else trees
    values = matrix.astype(np.float32).astype(np.float64)  # sklearn's trees compare float32 values
    credit = np.zeros(matrix.shape)
    _attribute(values, *trees, credit)
    return credit / len(forest.estimators_)


def flat_trees(forest: IsolationForest) -> tuple[np.ndarray, ...]:
    """(roots, left, right, feature, threshold, expected) of every tree, nodes numbered one tree after the
    other: children (``LEAF`` at a leaf), the split's column, its threshold, and c(rows at the node)."""
    n_features = forest.n_features_in_
    trees = [estimator.tree_ for estimator in forest.estimators_]
    offsets = np.cumsum([0] + [tree.node_count for tree in trees])
    left, right = np.full(offsets[-1], LEAF, dtype=np.int64), np.full(offsets[-1], LEAF, dtype=np.int64)
    feature, threshold, expected = np.zeros(offsets[-1], dtype=np.int64), np.zeros(offsets[-1]), np.zeros(offsets[-1])
    for tree, tree_features, offset in zip(trees, forest.estimators_features_, offsets, strict=False):
        # sklearn feeds a tree the subset of its features only when that subset is a strict one
        columns = tree_features if len(tree_features) < n_features else np.arange(n_features)
        nodes = slice(offset, offset + tree.node_count)
        split = tree.children_left != LEAF
        left[nodes] = np.where(split, tree.children_left + offset, LEAF)
        right[nodes] = np.where(split, tree.children_right + offset, LEAF)
        feature[nodes] = np.where(split, columns[np.maximum(tree.feature, 0)], 0)
        threshold[nodes], expected[nodes] = tree.threshold, average_path_length(tree.n_node_samples)
    return offsets[:-1].astype(np.int64), left, right, feature, threshold, expected


@njit
def _attribute(values, roots, left, right, feature, threshold, expected, credit):
    """Each row's walk down each tree, crediting every split's path shortening to its column."""
    for i in range(values.shape[0]):
        for t in range(len(roots)):
            node = roots[t]
            while left[node] != LEAF:
                column = feature[node]
                child = left[node] if values[i, column] <= threshold[node] else right[node]
                credit[i, column] += expected[node] - 1.0 - expected[child]
                node = child


class IsolationForestDetector(Detector):
    """scikit-learn's IsolationForest on the scaled features; see the module docstring for its explanations."""

    name = "iforest"

    def __init__(self, n_estimators: int = 100, max_samples: int = 256, threshold_quantile: float = 0.99,
                 seed: int = 0):  # fmt: skip
        super().__init__(threshold_quantile=threshold_quantile, seed=seed)
        self.n_estimators = n_estimators
        self.max_samples = max_samples

    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(matrix)),
                                       random_state=self.seed).fit(matrix)  # fmt: skip

    def _score(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        # -score_samples, by the compiled walk of the same trees (``outlier_scores.Forest``): scikit-learn's own
        # costs ~40 ms a call whatever the rows, most of a live micro-batch
        if not hasattr(self, "compiled_"):  # fitted, or loaded from an entry saved before it existed
            self.compiled_ = Forest(self.forest_)
        return self.compiled_.score(np.ascontiguousarray(matrix, dtype=np.float64))

    def _contributions(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        if not hasattr(self, "flat_trees_"):  # (as compiled_)
            self.flat_trees_ = flat_trees(self.forest_)
        return path_length_attribution(self.forest_, matrix, self.flat_trees_)

    def export_onnx(self, path: Path) -> Path:
        """Write the score function (scaled float32 matrix in, score out) to path, with skl2onnx."""
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        from amoskys.models import onnx_export

        self._check_fitted()
        inputs = [(onnx_export.INPUT, FloatTensorType([None, len(self.features_)]))]
        model = convert_sklearn(self.forest_, initial_types=inputs,
                                target_opset={"": onnx_export.OPSET, "ai.onnx.ml": onnx_export.ML_OPSET})  # fmt: skip
        # skl2onnx's "scores" is decision_function = score_samples - offset_; the detector's score is -score_samples
        model = onnx_export.score_output(model, "scores", column=0, scale=-1.0, shift=-float(self.forest_.offset_))
        return onnx_export.save(model, path)
