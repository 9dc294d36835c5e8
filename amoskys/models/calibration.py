"""Calibration: any detector's score on one scale, "how rare was this in training?".

``TailCalibration`` maps a score to its surprise, −log10 of the share of training
scores at least as high: 0 for a typical score, 2 for one that 1% of training rows
reach, 3 for 0.1%. Scores past the highest training score keep rising, by one unit per
spread of the training tail (the distance between the top score and the score one unit
of surprise below it), so two unseen extremes stay ordered. Surprises of different
detectors are comparable, and so can be added.

``threat_score`` turns a (calibrated) surprise into the 0-100 threat score of DESIGN.md:
25 per unit above 1, so the bands mean training rarity: low (>= 25) is 1 in 100 training
rows, medium (>= 50) 1 in 1,000, high (>= 75) 1 in 10,000, critical (>= 90) rarer still.

>>> calibration = TailCalibration().fit(np.arange(1000.0))
>>> [round(float(s), 2) for s in calibration.surprise(np.array([-5.0, 500.0, 999.0]))]
[0.0, 0.3, 3.0]
>>> round(float(calibration.surprise(np.array([999.0 + calibration.tail_spread_]))[0]), 2)
4.0
>>> [level(s) for s in (10, 30, 60, 80, 95)]
['benign', 'low', 'medium', 'high', 'critical']
"""

from __future__ import annotations

import numpy as np

from amoskys.errors import InputError

BANDS = ((90.0, "critical"), (75.0, "high"), (50.0, "medium"), (25.0, "low"))
_FLOORS, _NAMES = np.array([b for b, _ in BANDS[::-1]]), np.array(["benign", *(n for _, n in BANDS[::-1])])
_STEPS_PER_UNIT = 20  # quantile levels kept per unit of surprise


class TailCalibration:
    """Score -> surprise, learned from training scores only."""

    def fit(self, scores: np.ndarray) -> TailCalibration:
        scores = np.asarray(scores, dtype=np.float64)
        if len(scores) < 2 or not np.isfinite(scores).all():
            raise InputError("calibration needs at least 2 finite training scores")
        top = np.log10(len(scores))  # the rarest level the training rows can show
        self.surprises_ = np.linspace(0.0, top, max(2, int(np.ceil(top * _STEPS_PER_UNIT)) + 1))
        levels = 1.0 - 10.0 ** -self.surprises_
        levels[-1] = 1.0  # the top score itself
        self.quantiles_ = np.quantile(scores, levels)
        below = np.quantile(scores, 1.0 - 10.0 ** -max(top - 1.0, 0.0))
        self.tail_spread_ = max(float(self.quantiles_[-1] - below), 1e-12 * max(1.0, abs(float(self.quantiles_[-1]))))
        return self

    def surprise(self, scores: np.ndarray) -> np.ndarray:
        """-log10 of the share of training scores at least as high as each score (see the module docstring)."""
        scores = np.asarray(scores, dtype=np.float64)
        q, s = self.quantiles_, self.surprises_
        # Levels whose quantile lies below the score: a score tied with many training scores gets the
        # lowest surprise of the tie (nothing about it is rare).
        below = np.searchsorted(q, scores, side="left")
        inside = np.clip(below, 1, len(q) - 1)
        low_q, high_q = q[inside - 1], q[inside]
        step = np.where(high_q > low_q, (scores - low_q) / np.where(high_q > low_q, high_q - low_q, 1.0), 0.0)
        out = s[inside - 1] + (s[inside] - s[inside - 1]) * np.clip(step, 0.0, 1.0)
        out = np.where(below == 0, 0.0, out)
        beyond = scores > q[-1]
        return np.where(beyond, s[-1] + (scores - q[-1]) / self.tail_spread_, out)


def threat_score(surprise: np.ndarray) -> np.ndarray:
    """0-100: 25 per unit of surprise above 1, capped."""
    return np.clip(25.0 * (np.asarray(surprise, dtype=np.float64) - 1.0), 0.0, 100.0)


def levels(scores: np.ndarray) -> list[str]:
    """The band of each threat score: benign < 25 <= low < 50 <= medium < 75 <= high < 90 <= critical (NaN:
    benign).

    >>> levels(np.array([0.0, 24.99, 25.0, 89.9, 90.0, np.nan]))
    ['benign', 'benign', 'low', 'high', 'critical', 'benign']
    """
    scores = np.asarray(scores, dtype=np.float64)
    band = np.searchsorted(_FLOORS, np.where(np.isnan(scores), -np.inf, scores), side="right")
    return _NAMES[band].tolist()


def level(score: float) -> str:
    """The band of one threat score (``levels``)."""
    return levels(np.array([score]))[0]
