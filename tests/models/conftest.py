"""Fixtures shared by the model tests: the detectors under the contract, their fast settings, a labeled fleet.

To put a new detector under the shared contract (``test_contract.py``), append its
registry name to ``DETECTORS`` and give it small, fast parameters in ``FAST_PARAMS``.
The test modules import the helpers with ``from .conftest import ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest

from amoskys.models import Detector, get
from amoskys.models.onnx_export import INPUT, OUTPUT, check_parity

DETECTORS = ["iforest", "pca", "xgboost", "lstm_ae", "transformer_ae", "bdh", "live"]

# small settings that keep each fit well under a second on 2 cores
FAST_PARAMS: dict[str, dict] = {
    "iforest": {"n_estimators": 50},
    "pca": {},
    "xgboost": {"n_estimators": 50, "max_depth": 3, "threads": 1},  # 2 threads crawl when the other core is busy
    "lstm_ae": {"window": 10, "latent": 4, "epochs": 6, "batch_size": 128, "trim": 0.2},
    "transformer_ae": {"window": 10, "latent": 4, "epochs": 6, "batch_size": 128, "trim": 0.2},
}
FAST_PARAMS["bdh"] = {"members": ("iforest", "pca", "lstm_ae"),
                      "member_params": {name: FAST_PARAMS[name] for name in ("iforest", "pca", "lstm_ae")}}
FAST_PARAMS["live"] = {"member_params": {name: FAST_PARAMS[name] for name in ("iforest", "pca", "xgboost")}}

FEATURES = ["cpu_pct", "mem_pct", "load_1m", "proc_count", "net_in_kbps", "net_out_kbps", "disk_read_kbps",
            "disk_write_kbps", "auth_failures", "dns_queries"]  # fmt: skip
FACTORS = 3  # hidden drivers (user activity, batch jobs, traffic) that make the features correlated
ANOMALY_KINDS = 4  # incident kinds: each moves a fixed set of features in fixed directions
SHIFTED_PER_KIND = 3
SEGMENT_ROWS = 15
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Fleet:
    """A labeled feature frame and, per row, which features an injected incident moved."""

    frame: pl.DataFrame  # host, ts, the FEATURES, label (1 inside an incident)
    shifted: np.ndarray  # (rows, features) bool

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy()


def make_fleet(seed: int, hosts: int = 4, rows_per_host: int = 300, incidents_per_host: int = 2) -> Fleet:
    """A fleet of hosts sampled once a minute; every frame shares the same feature structure and incident kinds.

    Features are a few smooth (AR(1)) hidden factors mixed by fixed loadings, plus a little
    noise and a per-host offset, on each feature's own unit and level. An incident is a run
    of SEGMENT_ROWS rows where its kind's features jump by 6 standard deviations, some up,
    some down: a break of the usual correlations, as when traffic rises with CPU idle.
    """
    structure = np.random.default_rng(2026)  # the same for every seed: train and test frames share it
    loadings = structure.normal(size=(FACTORS, len(FEATURES)))
    level, unit = structure.uniform(10, 100, len(FEATURES)), structure.uniform(0.5, 20, len(FEATURES))
    kinds = [(structure.choice(len(FEATURES), SHIFTED_PER_KIND, replace=False),
              structure.choice([-1.0, 1.0], SHIFTED_PER_KIND)) for _ in range(ANOMALY_KINDS)]  # fmt: skip
    spread = np.sqrt((loadings**2).sum(axis=0) + 0.15**2)  # each feature's standard deviation in factor units

    rng = np.random.default_rng(seed)
    frames, shifted_rows = [], []
    for host in range(hosts):
        factors = np.zeros((rows_per_host, FACTORS))
        factors[0] = rng.normal(size=FACTORS)
        for t in range(1, rows_per_host):
            factors[t] = 0.9 * factors[t - 1] + np.sqrt(1 - 0.9**2) * rng.normal(size=FACTORS)
        values = factors @ loadings + rng.normal(scale=0.15, size=(rows_per_host, len(FEATURES)))
        values += rng.normal(scale=0.3, size=len(FEATURES))  # the host's own baseline
        label, shifted = np.zeros(rows_per_host, dtype=np.int8), np.zeros((rows_per_host, len(FEATURES)), dtype=bool)
        block = rows_per_host // incidents_per_host
        for incident in range(incidents_per_host):  # one incident somewhere inside each block, never overlapping
            start = incident * block + int(rng.integers(0, block - SEGMENT_ROWS))
            columns, signs = kinds[(host * incidents_per_host + incident) % ANOMALY_KINDS]  # every kind in every frame
            rows = slice(start, start + SEGMENT_ROWS)
            values[rows, columns] += 6.0 * signs * spread[columns]
            label[rows], shifted[rows, columns] = 1, True
        frames.append(pl.DataFrame({
            "host": [f"host-{host}"] * rows_per_host,
            "ts": [T0 + timedelta(minutes=t) for t in range(rows_per_host)],
            **{name: level[j] + unit[j] * values[:, j] for j, name in enumerate(FEATURES)},
            "label": label,
        }))  # fmt: skip
        shifted_rows.append(shifted)
    return Fleet(pl.concat(frames), np.concatenate(shifted_rows))


def make_detector(name: str, **params) -> Detector:
    """A new detector with the fast settings, overridden by params."""
    return get(name, **{**FAST_PARAMS.get(name, {}), **params})


def fit(detector: Detector, frame: pl.DataFrame) -> Detector:
    """detector fitted on frame: with its labels when it is supervised, on the rows alone otherwise."""
    return detector.fit(frame, frame["label"].to_numpy()) if detector.needs_labels else detector.fit(frame)


@pytest.fixture(scope="session")
def fleet_train() -> Fleet:
    return make_fleet(seed=1)


@pytest.fixture(scope="session")
def fleet_test() -> Fleet:
    return make_fleet(seed=2)


@pytest.fixture(scope="session", params=DETECTORS)
def detector_name(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def fitted_detector(detector_name: str, fleet_train: Fleet) -> Detector:
    """One fitted detector per name, shared by the tests that only read it."""
    return fit(make_detector(detector_name), fleet_train.frame)


def assert_onnx_parity(detector: Detector, frame: pl.DataFrame, folder: Path) -> None:
    """detector's ONNX export gives its scores on frame, to float32 precision."""
    path = detector.export_onnx(folder / f"{detector.name}.onnx")
    assert path is not None and path.exists()
    model = onnx.load(str(path))
    assert [put.name for put in model.graph.input] == [INPUT] and [put.name for put in model.graph.output] == [OUTPUT]
    scores = detector.score_samples(frame)
    assert check_parity(detector, path, detector._matrix(frame)) <= 1e-4 * max(1.0, float(np.abs(scores).max()))
