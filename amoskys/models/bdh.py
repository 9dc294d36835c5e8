"""BDH ensemble: Bayesian calibration + Deep and classic members + Heuristic rules, as a 0-100 threat score.

- **Members** (default iforest, pca and the LSTM autoencoder; plus xgboost when the
  training rows carry both labels) are fitted on the same training rows, or given
  already fitted (``prefit``, as ``amoskys train`` does, so nothing is trained twice).
- **Calibration**: each member's score becomes its surprise among the normal training
  rows (its own ``calibration_``: −log10 of the share of those rows scoring at least as
  high; out-of-fold for xgboost and pca), so scores of different models add up meaningfully.
- **Fusion**: the weighted median of the surprises (of two, the lower), so that no single
  member's blind spot or false alarm swings the result (a weighted mean let the weakest member drag
  the ensemble below its best one). Weights are equal without labels; with labels each
  member weighs by how far its average precision beats the base rate, on the labeled
  training rows. (Not on the validation split, as the issue first suggested: the
  ensemble is evaluated there, and weights chosen on it would make that optimistic.)
  The fused value is calibrated once more on the normal training rows and mapped to
  0-100 (``threat_score``), so the bands mean training rarity. Weights and calibration
  use a sample of training rows (``calibration_sample``): scoring every training row
  with the sequence members would take most of a long fit.
- **Heuristics**: security-pack rules (``rules``) lift a row to at least their floor.

``score_samples`` is the threat score; ``assess`` adds the level, the members' own
calibrated scores, the rules that fired and the top features (an ``Assessment``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from amoskys.models.base import MODEL_FILE, Detector
from amoskys.models.calibration import TailCalibration, levels, threat_score
from amoskys.models.rows import Rows
from amoskys.models.rules import DEFAULT_RULES, Rule, rule_hits

DEFAULT_MEMBERS = ("iforest", "pca", "lstm_ae")
SAMPLE_ROWS, SAMPLE_BLOCK_ROWS = 10_000, 500
_SCALING = ("fill_", "center_", "scale_")  # what a member fitted with the ensemble shares with it (``Detector.fit``)


@dataclass(frozen=True)
class Assessment:
    """What ``assess`` finds, column by column: a live micro-batch has hundreds of rows, and a Python call per
    row and member cost more than the scoring. ``row(i)`` is one row's, as a dict."""

    threat: list[float]  # 0-100, rounded to 2 decimals
    level: list[str]  # the band of each unrounded threat
    members: dict[str, list[float]]  # each member's own threat (its calibrated score), rounded
    rules: dict[int, list[str]]  # row -> the rules that fired on it (rows where none did are left out)
    features: dict[int, list[dict]]  # row -> its top features (``Contribution.as_dict``; the rows explained)

    def row(self, i: int) -> dict:
        return {"threat": self.threat[i], "level": self.level[i],
                "members": {name: scores[i] for name, scores in self.members.items()},
                "rules": self.rules.get(i, []), "features": self.features.get(i, [])}  # fmt: skip


class BdhEnsemble(Detector):
    name = "bdh"
    default_members = DEFAULT_MEMBERS
    novelty = False  # it sees the labels itself: members get them, weights are learned from them

    def __init__(self, members: tuple[str, ...] | None = None, member_params: dict | None = None,
                 prefit: dict[str, Detector] | None = None, rules: tuple[Rule, ...] = DEFAULT_RULES,
                 threshold_quantile: float = 0.99, seed: int = 0):  # fmt: skip
        super().__init__(threshold_quantile, seed)
        self.members = members
        self.member_params = member_params
        self.prefit = prefit
        self.rules = rules

    def assess(self, X: Rows, top_k: int = 5, explain_from: float = 0.0) -> Assessment:
        """Per row: threat score and level, each member's calibrated score, the rules that fired, and the top
        features of the rows whose threat is at least explain_from (explaining costs more than scoring)."""
        raw, member_raws = self._raws(X)
        surprises = self._surprises(X, member_raws)
        threat, hits = self._threat(surprises, X)
        rows = np.flatnonzero(threat >= explain_from)
        explained = {}
        if len(rows):
            picked = X[rows]
            picked_surprises = {name: s[rows] for name, s in surprises.items()}
            picked_raws = {name: m[rows] for name, m in member_raws.items()}
            contributions = self._weighted_contributions(picked, picked_surprises, picked_raws)
            top = self._top_contributions(picked, contributions, top_k, raw[rows])
            explained = {i: [c.as_dict() for c in row] for i, row in zip(rows.tolist(), top)}
        any_hit = np.logical_or.reduce([*hits.values(), np.zeros(X.height, dtype=bool)])
        fired = {i: [name for name, hit in hits.items() if hit[i]] for i in np.flatnonzero(any_hit).tolist()}
        return Assessment(np.round(threat, 2).tolist(), levels(threat),
                          {name: np.round(threat_score(s), 2).tolist() for name, s in surprises.items()}, fired,
                          explained)  # fmt: skip

    def threat_of(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores, dtype=np.float64)  # the ensemble's score is the threat already

    def save(self, folder: Path) -> list[Path]:
        self._check_fitted()
        folder.mkdir(parents=True, exist_ok=True)
        files = [f for name, member in self.members_.items() for f in member.save(folder / name)]
        shell = copy.copy(self)  # the members are saved in their own folders, in their own formats
        shell.members_, shell.prefit = {name: type(m).name for name, m in self.members_.items()}, None
        joblib.dump(shell, folder / MODEL_FILE)
        return [*files, folder / MODEL_FILE]

    @classmethod
    def load(cls, folder: Path) -> BdhEnsemble:
        from amoskys.models import detector_class

        model = super().load(folder)
        model.members_ = {name: detector_class(kind).load(folder / name) for name, kind in model.members_.items()}
        return model

    def _fit(self, matrix: np.ndarray, X: pl.DataFrame, y: np.ndarray | None) -> None:
        from amoskys.models import get

        labeled = y is not None and len(np.unique(y)) == 2
        names = self.members or (*self.default_members, *(("xgboost",) if labeled else ()))
        prefit, params = self.prefit or {}, self.member_params or {}
        self.members_ = {}
        for name in names:
            if name in prefit:
                self.members_[name] = prefit[name]
                continue
            member = get(name, seed=self.seed, **params.get(name, {}))
            self.members_[name] = member.fit(X, y if labeled else None, features=self.features_)
        self.shared_scaling_ = self._shared_scaling()
        sample = calibration_sample(X)
        rows, y_sample = X.filter(pl.Series(sample)), np.asarray(y)[sample] if labeled else None
        surprises = self._surprises(rows, self._raws(rows)[1])
        both = y_sample is not None and len(np.unique(y_sample)) == 2
        self.weights_ = _weights(surprises, y_sample if both else None)
        benign = np.ones(int(sample.sum()), dtype=bool) if y_sample is None else y_sample == 0
        self.fused_calibration_ = TailCalibration().fit(self._fuse(surprises)[benign])
        # the threshold comes from the same rows' threat scores (see _normal_scores)
        self.sample_normal_threat_ = self._threat(surprises, rows)[0][benign]

    def _normal_scores(self, X: pl.DataFrame, y: np.ndarray | None, normal: pl.DataFrame) -> np.ndarray:
        """The threat scores of the calibration sample's normal rows, as ``_fit`` computed them (scoring
        every normal training row again with the sequence members would double a long fit)."""
        return self.sample_normal_threat_

    def _score(self, matrix: np.ndarray, X: Rows) -> np.ndarray:
        return self._parts(X)[0]

    def _contributions(self, matrix: np.ndarray, X: Rows) -> np.ndarray:
        member_raws = self._raws(X)[1]
        return self._weighted_contributions(X, self._surprises(X, member_raws), member_raws)

    def _weighted_contributions(self, X: Rows, surprises: dict[str, np.ndarray],
                                member_raws: dict[str, np.ndarray]) -> np.ndarray:  # fmt: skip
        """Each member's per-feature contributions, as shares of its row total, weighted by its surprise and weight."""
        index = {feature: j for j, feature in enumerate(self.features_)}
        out = np.zeros((X.height, len(self.features_)))
        prepared = self._prepared_members(member_raws)
        for name, member in self.members_.items():
            own = np.abs(member._contributions(prepared[name], X))
            shares = own / np.maximum(own.sum(axis=1, keepdims=True), 1e-300)
            weight = self.weights_[name] * surprises[name]
            shared = [j for j, feature in enumerate(member.features_) if feature in index]
            out[:, [index[member.features_[j]] for j in shared]] += shares[:, shared] * weight[:, None]
        return out

    def _parts(self, X: Rows) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(threat scores, each member's surprise, each rule's hits) of the rows of X."""
        surprises = self._surprises(X, self._raws(X)[1])
        threat, hits = self._threat(surprises, X)
        return threat, surprises, hits

    def _raws(self, X: Rows) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """X's ``_raw`` matrix, and each member's: its columns of the ensemble's (one conversion of the frame
        for all, the bulk of a live micro-batch's scoring), or its own where it has features the ensemble lacks."""
        raw = self._raw(X)
        index = {feature: j for j, feature in enumerate(self.features_)}
        member_raws = {}
        for name, member in self.members_.items():
            if member.features_ == self.features_:
                member_raws[name] = raw
            elif all(feature in index for feature in member.features_):
                member_raws[name] = raw[:, [index[feature] for feature in member.features_]]
            else:
                member_raws[name] = member._raw(X)
        return raw, member_raws

    def _threat(self, surprises: dict[str, np.ndarray], X: Rows) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(threat scores, each rule's hits) from the members' surprises on the rows of X."""
        threat = threat_score(self.fused_calibration_.surprise(self._fuse(surprises)))
        hits = rule_hits(X, self.rules)
        for rule in self.rules:
            threat = np.where(hits[rule.name], np.maximum(threat, rule.floor), threat)
        return threat, hits

    def _surprises(self, X: Rows, member_raws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's score (of its ``_raw`` matrix of X) as its surprise among normal training rows."""
        if X.height == 0:  # some members (scikit-learn's) refuse an empty matrix
            return {name: np.empty(0) for name in self.members_}
        prepared = self._prepared_members(member_raws)
        return {name: member.calibration_.surprise(member._score(prepared[name], X))
                for name, member in self.members_.items()}  # fmt: skip

    def _prepared_members(self, member_raws: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each member's ``_prepared`` matrix of its raw matrix: computed once for the members with the ensemble's
        columns and scaling (all of them, fitted together), which then share it (read-only)."""
        if not hasattr(self, "shared_scaling_"):  # an ensemble saved before it was learned
            self.shared_scaling_ = self._shared_scaling()
        shared, out = {}, {}
        for name, member in self.members_.items():
            raw = member_raws[name]
            if name not in self.shared_scaling_:
                out[name] = member._prepared(raw)
                continue
            if id(raw) not in shared:
                shared[id(raw)] = self._prepared(raw)
                shared[id(raw)].flags.writeable = False
            out[name] = shared[id(raw)]
        return out

    def _shared_scaling(self) -> frozenset[str]:
        """The members with the ensemble's columns and scaling (found once: comparing them cost a live micro-batch
        more than scaling)."""
        return frozenset(name for name, member in self.members_.items() if member.features_ == self.features_ and all(
            np.array_equal(getattr(member, a), getattr(self, a), equal_nan=True) for a in _SCALING))  # fmt: skip

    def _fuse(self, surprises: dict[str, np.ndarray]) -> np.ndarray:
        return weighted_median(np.stack(list(surprises.values())), np.array([self.weights_[n] for n in surprises]))


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column of values (members x rows), the weighted median: the lowest value that, with every lower
    one, holds at least half the weight; so where the weights split exactly in half, the lower of the two
    middle values. With two members (the live ensemble without labels) both must find a row unusual for it
    to be: their mean let one member's alarm alone (PCA's, on anything off a short baseline's subspace)
    make a high threat.

    >>> weighted_median(np.array([[1.0, 5.0], [2.0, 6.0], [9.0, 0.0]]), np.array([1.0, 1.0, 1.0]) / 3)
    array([2., 5.])
    >>> weighted_median(np.array([[1.0], [3.0]]), np.array([0.5, 0.5]))
    array([1.])
    """
    order = np.argsort(values, axis=0, kind="stable")
    ranked = np.take_along_axis(values, order, axis=0)
    cumulative = np.cumsum(weights[order], axis=0) / weights.sum()
    first = np.argmax(cumulative >= 0.5 - 1e-12, axis=0)  # the first value holding half the weight
    return ranked[first, np.arange(values.shape[1])]


def calibration_sample(X: pl.DataFrame) -> np.ndarray:
    """Rows (a mask over X) the weights and the fused calibration are learned on: every k-th block of
    ``SAMPLE_BLOCK_ROWS`` consecutive rows of each host, about ``SAMPLE_ROWS`` in all. Scoring every
    training row with the sequence members would take most of a long fit; contiguous blocks keep
    their windows whole, and blocks spread over the whole training range."""
    k = max(1, math.ceil(X.height / SAMPLE_ROWS))
    block = X.select(pl.int_range(pl.len()).over("host", order_by="ts") // SAMPLE_BLOCK_ROWS).to_series().to_numpy()
    return block % k == 0


def _weights(surprises: dict[str, np.ndarray], y: np.ndarray | None) -> dict[str, float]:
    """Equal weights, or with labels each member's average precision above the base rate (normalised)."""
    if y is None:
        return {name: 1.0 / len(surprises) for name in surprises}
    from sklearn.metrics import average_precision_score

    base_rate = float(np.mean(y))
    gains = {name: max(average_precision_score(y, s) - base_rate, 0.0) for name, s in surprises.items()}
    total = sum(gains.values())
    if total == 0:
        return {name: 1.0 / len(surprises) for name in surprises}
    return {name: gain / total for name, gain in gains.items()}
