"""The detector contract every model follows (scikit-learn style).

A detector learns on a feature frame: a Polars DataFrame with ``host`` and ``ts`` and
numeric feature columns, as the pipeline writes them (``label`` and ``incident`` are
never features). ``fit(X, y=None)`` records the feature list, learns how to fill a
missing value (the training median) and a robust scale (training median and IQR), fits
the model, and sets ``threshold_`` to a quantile of the training scores: training data
only. ``score_samples(X)`` is higher for more anomalous rows; ``predict`` compares it
with ``threshold_``. ``explain(X, top_k)`` names, per row, the features that drove the
score, with the row's value and the feature's typical (training p5-p95) range. Scoring
and explaining also take the live path's ``FeatureRows`` (a matrix, no frame).

Subclasses implement ``_fit(matrix, X, y)``, ``_score(matrix, X)`` and
``_contributions(matrix, X)`` on the filled, scaled float64 matrix (``X`` is there for
models that need the host and time of each row, such as sequence models). Constructors
only store their arguments; learned attributes end in ``_``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import joblib
import numpy as np
import polars as pl

from amoskys.errors import InputError, ModelError
from amoskys.models.calibration import TailCalibration, threat_score
from amoskys.models.rows import FeatureRows, Rows
from amoskys.pipeline.jit import njit

SCALE_FLOOR = 0.01  # a feature's scale is at least this share of its typical |value|

NOT_FEATURES = frozenset({"host", "ts", "label", "incident"})
MODEL_FILE = "model.joblib"


@dataclass(frozen=True)
class Contribution:
    """One feature's part in a row's score, with the row's value and the training range."""

    feature: str
    contribution: float  # in the detector's own units; larger = more to blame
    value: float | None  # the row's raw value (None when missing)
    typical_low: float  # training p5
    typical_median: float
    typical_high: float  # training p95

    def as_dict(self) -> dict:
        return {"feature": self.feature, "contribution": self.contribution, "value": self.value,
                "typical": [self.typical_low, self.typical_high], "median": self.typical_median}  # fmt: skip


def feature_columns(frame: pl.DataFrame) -> list[str]:
    """The numeric columns of frame that are features (not keys or labels)."""
    return [name for name, dtype in frame.schema.items() if name not in NOT_FEATURES and dtype.is_numeric()]


class Detector:
    """Base of every detector; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    needs_labels: ClassVar[bool] = False  # supervised: fit refuses without both classes in y
    novelty: ClassVar[bool] = True  # unsupervised: given labels, learns from the benign rows only

    def __init__(self, threshold_quantile: float = 0.99, seed: int = 0):
        self.threshold_quantile = threshold_quantile
        self.seed = seed

    # -- the contract -------------------------------------------------------------------

    def fit(self, X: pl.DataFrame, y: np.ndarray | None = None, features: list[str] | None = None) -> Detector:
        """Learn from the rows of X; features default to every feature column.

        With labels y, "normal" means the benign rows (label 0): fill values, scale,
        typical ranges, the threshold and the calibration come from them, and a novelty
        detector learns from them alone (incidents in the training split would
        otherwise teach it that attacks are normal). A supervised model learns from all
        rows with their labels.
        """
        self.features_ = list(features) if features is not None else feature_columns(X)
        if not self.features_:
            raise InputError(f"{self.name}: the training frame has no feature columns")
        if X.height < 2:
            raise InputError(f"{self.name}: needs at least 2 training rows, got {X.height}")
        if self.needs_labels:
            y = _check_labels(self.name, y, X.height)
        normal = X if y is None else _benign_rows(self.name, X, y)
        raw = self._raw(normal)
        known = ~np.isnan(raw).all(axis=0)  # a feature never present in training is filled with 0
        self.fill_ = np.zeros(raw.shape[1])
        self.fill_[known] = np.nanmedian(raw[:, known], axis=0)
        filled = np.where(np.isnan(raw), self.fill_, raw)
        low, q25, self.typical_median_, q75, high = np.percentile(filled, [5, 25, 50, 75, 95], axis=0)
        self.typical_range_ = np.stack([low, high], axis=1)
        spread = np.where(q75 > q25, q75 - q25, filled.std(axis=0))
        # at least 1% of the typical level: a feature flat in training (a short baseline's memory) must not turn
        # a shift of a fraction of a percent into thousands of spreads
        spread = np.maximum(spread, SCALE_FLOOR * np.abs(self.typical_median_))
        self.center_, self.scale_ = self.typical_median_, np.where(spread > 0, spread, 1.0)
        if self.needs_labels or not self.novelty:
            self._fit(self._matrix(X), X, y)
        else:
            self._fit(self._prepared(filled), normal, None)
        normal_scores = np.asarray(self._normal_scores(X, y, normal), dtype=np.float64)
        self.threshold_ = float(np.quantile(normal_scores, self.threshold_quantile))
        self.calibration_ = TailCalibration().fit(normal_scores)
        return self

    def score_samples(self, X: Rows) -> np.ndarray:
        """One score per row of X; higher = more anomalous."""
        self._check_fitted()
        matrix = self._matrix(X)
        if not len(matrix):  # an empty batch; some models (scikit-learn's) refuse one
            return np.empty(0)
        return np.asarray(self._score(matrix, X), dtype=np.float64)

    def predict(self, X: pl.DataFrame) -> np.ndarray:
        """1 where the score reaches the training threshold, else 0."""
        return (self.score_samples(X) >= self.threshold_).astype(np.int8)

    def threat_scores(self, X: pl.DataFrame) -> np.ndarray:
        """The 0-100 threat score of each row: its score's rarity among the training scores (see ``calibration``)."""
        return self.threat_of(self.score_samples(X))

    def threat_of(self, scores: np.ndarray) -> np.ndarray:
        """The 0-100 threat scores of scores this detector gave (``score_samples``)."""
        return threat_score(self.calibration_.surprise(scores))

    def explain(self, X: Rows, top_k: int = 5) -> list[list[Contribution]]:
        """For each row of X, the top_k features by contribution to its score."""
        self._check_fitted()
        matrix = self._matrix(X)
        if not len(matrix):
            return []
        return self._top_contributions(X, self._contributions(matrix, X), top_k)

    def _top_contributions(self, X: pl.DataFrame, contributions: np.ndarray, top_k: int,
                           raw: np.ndarray | None = None) -> list[list[Contribution]]:  # fmt: skip
        """For each row of X, the top_k of its (rows x features) contributions, with values and typical ranges
        (raw: X's ``_raw`` matrix, when the caller has it already)."""
        raw = self._raw(X) if raw is None else raw
        contributions = np.asarray(contributions, dtype=np.float64)
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :top_k]
        return [
            [
                Contribution(self.features_[j], float(contributions[i, j]),
                             None if np.isnan(raw[i, j]) else float(raw[i, j]),
                             float(self.typical_range_[j, 0]), float(self.typical_median_[j]),
                             float(self.typical_range_[j, 1]))  # fmt: skip
                for j in row
            ]
            for i, row in enumerate(order)
        ]

    def save(self, folder: Path) -> list[Path]:
        """Write the fitted detector into folder; returns the files written."""
        self._check_fitted()
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, folder / MODEL_FILE)
        return [folder / MODEL_FILE]

    @classmethod
    def load(cls, folder: Path) -> Detector:
        """The detector that save(folder) wrote."""
        try:
            model = joblib.load(folder / MODEL_FILE)
        except (OSError, EOFError, ValueError) as error:
            raise ModelError(f"cannot load {cls.name or 'detector'} from {folder}: {error}") from None
        if not isinstance(model, cls):
            raise ModelError(f"{folder} holds a {type(model).__name__}, not a {cls.__name__}")
        return model

    def onnx_parity(self, onnx_path: Path, X: pl.DataFrame) -> float:
        """Largest absolute difference between the ONNX export's scores and score_samples on the rows of X."""
        from amoskys.models.onnx_export import check_parity

        return check_parity(self, onnx_path, self._matrix(X))

    # -- for subclasses -----------------------------------------------------------------

    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        raise NotImplementedError

    def _score(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _contributions(self, matrix: np.ndarray, X: pl.DataFrame) -> np.ndarray:
        """(rows, features) array: each feature's share in each row's score."""
        raise NotImplementedError

    def _normal_scores(self, X: pl.DataFrame, y: np.ndarray | None, normal: pl.DataFrame) -> np.ndarray:
        """Scores of the normal training rows, for the threshold and calibration. A model that
        fits its training rows too closely for their scores to be typical overrides this."""
        return self._score(self._matrix(normal), normal)

    # -- shared plumbing ----------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ModelError(f"{self.name} is not fitted: call fit(X) first")

    def _raw(self, X: Rows) -> np.ndarray:
        """X's feature columns as float64, with null and non-finite values as NaN."""
        columns = X.index if isinstance(X, FeatureRows) else set(X.columns)  # (a frame's is a new list each time)
        if missing := [f for f in self.features_ if f not in columns]:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise InputError(f"{self.name}: the input lacks {len(missing)} feature(s) the model needs: {shown}")
        if isinstance(X, FeatureRows):
            return X.matrix(self.features_)
        picked = X[self.features_]  # (indexing by names: a select of as many expressions costs more)
        raw = picked.to_numpy()
        if raw.dtype != np.float64:  # some feature is not a float
            raw = picked.cast(pl.Float64).to_numpy()
        if not raw.flags.writeable:  # Polars hands out a read-only view of a single float column
            raw = raw.copy()
        raw[~np.isfinite(raw)] = np.nan
        return raw

    def _matrix(self, X: Rows) -> np.ndarray:
        """X's features with missing values filled from training, robustly scaled."""
        return self._prepared(self._raw(X))

    def _prepared(self, raw: np.ndarray) -> np.ndarray:
        """A ``_raw`` matrix with missing values filled from training, robustly scaled: (x - center) / scale."""
        out = np.empty(raw.shape)
        _fill_and_scale(raw, self.fill_, self.center_, self.scale_, out)
        return out


def time_folds(X: pl.DataFrame, folds: int, block: int | None = None) -> np.ndarray:
    """Fold number of each row of X, so that a model fitted on the other folds scores a fold it has not seen:
    each host's rows (in X's order; all one host without a host column) cut into ``folds`` consecutive
    parts, or into blocks of ``block`` rows dealt out to the folds in turn.

    >>> hosts = pl.DataFrame({"host": ["a", "a", "b", "a", "b", "a"]})
    >>> time_folds(hosts, 2).tolist(), time_folds(hosts, 2, block=1).tolist()
    ([0, 0, 0, 1, 1, 1], [0, 1, 0, 0, 1, 1])
    """
    rank = pl.int_range(pl.len())
    position = rank * folds // pl.len() if block is None else rank // block % folds
    return X.select(position.over("host") if "host" in X.columns else position).to_series().to_numpy()


def _benign_rows(name: str, X: pl.DataFrame, y: np.ndarray) -> pl.DataFrame:
    """The rows of X labeled 0, or all of X when fewer than 2 are."""
    y = np.asarray(y)
    if y.shape != (X.height,):
        raise InputError(f"{name}: {y.size} labels for {X.height} rows")
    benign = y == 0
    return X.filter(pl.Series(benign)) if benign.sum() >= 2 else X


def _check_labels(name: str, y: np.ndarray | None, rows: int) -> np.ndarray:
    if y is None:
        raise InputError(f"{name} is supervised and the data has no labels: it needs a label column "
                         "(simulator or scenario labels, or analyst feedback)")  # fmt: skip
    try:
        values = np.asarray(y, dtype=np.float64)  # a null label becomes NaN and fails the 0/1 check
    except (TypeError, ValueError):
        raise InputError(f"{name}: labels must be numbers, 0 (normal) or 1 (anomalous)") from None
    if values.shape != (rows,):
        raise InputError(f"{name}: {values.size} labels for {rows} rows")
    if not np.isin(values, (0.0, 1.0)).all():
        raise InputError(f"{name}: labels must be 0 (normal) or 1 (anomalous), got {np.unique(values)[:5].tolist()}")
    y = values.astype(np.int8)
    if len(np.unique(y)) < 2:
        raise InputError(f"{name} needs both normal and anomalous labeled rows; the labels hold only {int(y[0])}")
    return y


@njit
def _fill_and_scale(raw, fill, center, scale, out):
    """out = (raw with NaN as fill - center) / scale, feature by feature, in one pass (NumPy made three
    temporaries of the whole matrix)."""
    for r in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            v = raw[r, j]
            out[r, j] = ((fill[j] if np.isnan(v) else v) - center[j]) / scale[j]
