"""The detector's retrain schedule: a real ``retrain`` in a spawned child on a real store, its promoted set
swapped into a running detector, and what is refused or fails along the way."""

from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from amoskys.cli import main
from amoskys.config import Config, DetectConfig, PipelineConfig, SimulatorConfig
from amoskys.detect.cli import build_detector, load_live_model
from amoskys.detect.retrain import retrain
from amoskys.detect.schedule import RetrainSchedule
from amoskys.errors import ModelError
from amoskys.pipeline.source import simulated
from amoskys.store.alerts import read_detections
from amoskys.store.store import Store
from amoskys.telemetry.telemetry_pb2 import Event, EventBatch, MetricFrame

ALL_OF_IT_S = 1e10  # retrain on every row the store holds (the simulator's start lies months back)


@pytest.fixture(scope="module")
def active(tmp_path_factory):
    """A store of simulated telemetry and a live set trained on it: what a detector runs with."""
    folder = tmp_path_factory.mktemp("schedule")
    store = folder / "amoskys.db"
    assert main(["simulate", "--hosts", "2", "--duration", "5400", "--store", str(store)]) == 0
    config = Config(pipeline=PipelineConfig(out=folder / "pipeline"),
                    detect=DetectConfig(registry=folder / "pipeline" / "registry"))  # fmt: skip
    assert retrain(config, store).promoted
    return config, store


def batches(hosts: int = 2, seconds: float = 600.0) -> list[EventBatch]:
    """Simulated snapshots as the bus hands them to a detector: one batch per grid step."""
    raw = simulated(SimulatorConfig(hosts=hosts, duration_seconds=seconds, seed=5)).snapshots
    names = [c for c in raw.columns if c not in ("host", "ts_ns", "label", "incident")]
    out = []
    for step in raw.sort("ts_ns", "host").partition_by("ts_ns", maintain_order=True):
        values = step.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
        frame = MetricFrame(names=names, host_ids=step["host"].to_list(), ts_ns=step["ts_ns"].to_list(),
                            values=values.ravel().tolist())  # fmt: skip
        out.append(EventBatch(agent_id="sim", seq=len(out) + 1, events=[Event(frame=frame)]))
    return out


def test_a_scheduled_round_retrains_in_a_child_and_its_promoted_set_is_swapped_in(active, tmp_path):
    config, store_path = active
    with Store.open(tmp_path / "detect.db") as store:
        detector = build_detector(config, store, load_live_model(config), started_ns=0)
        assert detector.retraining is None  # the default: no schedule
        first = detector.junction.model_set
        stream, at = batches(seconds=1800), 60
        detector.process(stream[:at])
        detector.retraining = RetrainSchedule(config, store_path, every_s=0.0, since_s=ALL_OF_IT_S, if_drifted=False)
        deadline = time.monotonic() + 600
        while detector.counts.swaps == 0 and time.monotonic() < deadline:
            detector._retrain_round()  # what ``run`` does between micro-batches
            if detector.retraining.running and at < len(stream) - 10:
                detector.process(stream[at : at + 1])  # the detector keeps scoring while the child trains
                at += 1
            time.sleep(0.5)
        second = detector.junction.model_set
        assert at > 60  # it scored while the child trained
        assert detector.counts.swaps == 1 and second != first and second.startswith("live-")
        assert load_live_model(config).entry_id == second  # promoted into the registry, then swapped in
        detector.process(stream[at:])
        stored = read_detections(store, detector.host_names[0])
        sets = [d.model_set for d in stored]  # in time order: the first set's rows, then the second's
        swapped_at = sets.index(second)
        assert swapped_at >= 60 and sets == [first] * swapped_at + [second] * (len(sets) - swapped_at)
        assert len(sets) >= len(stream) - 1  # every step scored (stage 1 takes a host's first snapshot for rates)
        assert stored[-1].model_set == second


def test_a_round_without_drift_trains_nothing_and_leaves_no_folder_behind(active):
    config, store_path = active
    before = set(config.pipeline.out.parent.glob("retrain-*"))
    schedule = RetrainSchedule(config, store_path, every_s=0.0, since_s=ALL_OF_IT_S, if_drifted=True)
    finished = wait_for_round(schedule)
    assert finished.promoted is None
    assert any(line.startswith("drift (PSI) stable") for line in finished.lines)  # the same data: no drift
    assert not any(line.startswith("holdout") for line in finished.lines)  # so no candidate was trained
    assert any(line.startswith("removed") for line in finished.lines)
    assert set(config.pipeline.out.parent.glob("retrain-*")) == before
    schedule.close()


def wait_for_round(schedule: RetrainSchedule, timeout_s: float = 600.0):
    deadline = time.monotonic() + timeout_s
    while (finished := schedule.poll()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert finished is not None, "the round did not finish in time"
    return finished


def test_a_round_that_fails_is_one_line_and_the_next_comes_on_schedule(active, tmp_path, capsys):
    config, _ = active
    Store.open(tmp_path / "empty.db").close()
    schedule = RetrainSchedule(config, tmp_path / "empty.db", every_s=0.0, since_s=3600.0, if_drifted=False)
    finished = wait_for_round(schedule, 120)
    assert finished.promoted is None
    assert "holds no telemetry" in finished.lines[0]
    assert "scheduled retrain failed: " in capsys.readouterr().err
    assert not schedule.running
    schedule.every_s = 3600.0
    assert schedule.poll() is None and schedule.running  # every_s was 0 when the round ended: due again
    schedule.close()
    assert not schedule.running


def test_a_set_whose_features_the_stream_lacks_is_refused_and_the_old_one_kept(active, tmp_path):
    config, _ = active
    with Store.open(tmp_path / "detect.db") as store:
        live = load_live_model(config)
        detector = build_detector(config, store, live, started_ns=0)
        other = copy.deepcopy(live.model)
        other.features_ = [*other.features_, "no_such_feature"]
        with pytest.raises(ModelError, match="no_such_feature"):
            detector.swap(replace(live, entry_id="live-other", model=other))
        assert detector.junction.model is live.model and detector.counts.swaps == 0
        longer = copy.deepcopy(live.anomaly)
        longer.window_s *= 2
        with pytest.raises(ModelError, match="restart the detector"):
            detector.swap(replace(live, entry_id="live-other", anomaly=longer))
        assert detector.junction.model_set == live.entry_id and detector.features.anomaly is live.anomaly
        assert detector.process(batches(seconds=60)) > 0  # and it still scores


def test_a_schedule_comes_from_the_config():
    assert RetrainSchedule.of(Config(), "x.db") is None
    config = Config(detect=DetectConfig(retrain_every_hours=6, retrain_since_hours=48, retrain_if_drifted=True))
    schedule = RetrainSchedule.of(config, "x.db")
    assert (schedule.every_s, schedule.since_s, schedule.if_drifted) == (6 * 3600, 48 * 3600, True)
    assert not schedule.running
