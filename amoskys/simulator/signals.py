"""Vectorised signal building blocks: daily cycles, smooth noise, exponential averages.

>>> import numpy as np
>>> exp_smooth(np.array([1.0, 1.0, 1.0]), decay=0.5, initial=0.0).tolist()
[1.0, 1.5, 1.75]
>>> round(float(diurnal(np.array([14.0]), peak_hour=14.0, floor=0.3)[0]), 6)
1.0
"""

from __future__ import annotations

import math

import numpy as np

# Largest growth exp_smooth lets decay**-k reach inside one chunk: far from float64
# overflow and loses no more precision than the step-by-step recursion.
_MAX_LOG_GROWTH = 30.0


def diurnal(hour_of_day: np.ndarray, peak_hour: float, floor: float) -> np.ndarray:
    """Activity between floor (at night for this host) and 1 (at peak_hour), a 24 h cosine."""
    cycle = 0.5 * (1.0 + np.cos(2.0 * np.pi * (hour_of_day - peak_hour) / 24.0))
    return floor + (1.0 - floor) * cycle


def exp_smooth(inputs: np.ndarray, decay: float, initial: float | np.ndarray) -> np.ndarray:
    """y[k] = decay * y[k-1] + inputs[k] along axis 0, with y[-1] = initial.

    Closed form per chunk (y[k] = decay**(k+1) * y[-1] + sum_j decay**(k-j) * inputs[j]) so
    the work is a few cumulative sums rather than a Python loop per sample.
    """
    inputs = np.asarray(inputs, dtype=np.float64)
    out = np.empty_like(inputs)
    n = inputs.shape[0]
    if 0.0 < decay < 1.0:
        chunk = max(1, int(_MAX_LOG_GROWTH / -math.log(decay)))
    else:
        chunk = 1 if decay <= 0.0 else max(1, n)
    trailing = (1,) * (inputs.ndim - 1)
    state = np.broadcast_to(np.asarray(initial, dtype=np.float64), inputs.shape[1:])
    for begin in range(0, n, chunk):
        block = inputs[begin : begin + chunk]
        steps = np.arange(block.shape[0]).reshape(-1, *trailing)
        growth = decay**-steps
        shrink = decay**steps
        out[begin : begin + block.shape[0]] = shrink * (decay * state + np.cumsum(block * growth, axis=0))
        state = out[begin + block.shape[0] - 1]
    return out


def ar1(rng: np.random.Generator, n: int, interval_s: float, tau_s: float, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Stationary unit-variance AR(1) noise of shape (n, *shape) with correlation time tau_s."""
    decay = math.exp(-interval_s / tau_s)
    innovations = rng.standard_normal((n, *shape)) * math.sqrt(1.0 - decay * decay)
    return exp_smooth(innovations, decay, rng.standard_normal(shape))


def wobble(
    rng: np.random.Generator,
    n: int,
    interval_s: float,
    sigma: float,
    tau_s: float,
    jitter: float = 0.02,
    shape: tuple[int, ...] = (),
) -> np.ndarray:
    """Multiplicative noise around 1: smooth log-normal drift (sigma, tau_s) plus white jitter."""
    smooth = sigma * ar1(rng, n, interval_s, tau_s, shape)
    return np.exp(smooth + jitter * rng.standard_normal((n, *shape)))
