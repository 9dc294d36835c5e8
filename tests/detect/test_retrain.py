"""``amoskys retrain`` on a store filled by the simulator: drift report, candidate against active, promotion."""

from __future__ import annotations

from dataclasses import replace

import pytest

from amoskys.cli import main
from amoskys.config import Config, DetectConfig, PipelineConfig
from amoskys.detect.retrain import retrain
from amoskys.errors import InputError
from amoskys.models.registry import Registry


@pytest.fixture
def filled(tmp_path):
    store = tmp_path / "amoskys.db"
    assert main(["simulate", "--hosts", "2", "--duration", "5400", "--store", str(store)]) == 0
    config = Config(pipeline=PipelineConfig(out=tmp_path / "pipeline"),
                    detect=DetectConfig(registry=tmp_path / "pipeline" / "registry"))  # fmt: skip
    return config, store


def test_the_first_set_is_promoted_then_compared_with_the_active_one(filled):
    config, store = filled
    first = retrain(config, store)
    assert first.promoted and first.active is None and first.candidate.startswith("live-")
    assert first.metric == "PR-AUC"  # the simulator's incidents label the holdout
    assert {e.model for e in Registry(config.detect.registry).entries()} >= {"iforest", "pca", "live"}

    second = retrain(config, store)
    assert second.active == first.candidate and second.active_value is not None
    assert second.drift and max(second.drift.values()) < config.detect.drift_psi  # the same data: no drift
    assert second.promoted == (second.candidate_value >= second.active_value - 0.01)
    if_drifted = retrain(config, store, if_drifted=True)
    assert if_drifted.candidate is None and not if_drifted.drifted  # nothing drifted: nothing trained


def test_an_empty_store_is_a_clear_error(tmp_path):
    from amoskys.store.store import Store

    Store.open(tmp_path / "empty.db").close()
    with pytest.raises(InputError, match="no telemetry"):
        retrain(replace(Config(), detect=DetectConfig(registry=tmp_path / "r")), tmp_path / "empty.db")
