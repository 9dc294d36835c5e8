"""No validation row influences anything fitted, nor any stage-5 output of a training row.

Each check fits stage 5 on the train split of a simulated fleet, then rewrites every
validation row (scaled by 1000, shuffled, or replaced by garbage), splits and refits:
the split, every fitted statistic and every stage-5 output of the training rows must
come out identical. The converse (changing training rows does change the statistics)
shows that the comparison can fail.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from amoskys.config import PipelineConfig, SimulatorConfig
from amoskys.pipeline.anomaly import AnomalyStage
from amoskys.pipeline.canonical import build_canonical
from amoskys.pipeline.source import simulated
from amoskys.pipeline.split import split_bounds, split_by_time

FRACTION = PipelineConfig().train_fraction


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    canonical = build_canonical(simulated(SimulatorConfig(hosts=3, duration_seconds=3600)), 5.0, 60.0)[0]
    return canonical.with_row_index("row")


@pytest.fixture(scope="module")
def fitted(frame) -> tuple[AnomalyStage, pl.DataFrame]:
    """The stage fitted on the original train split, and its outputs on the training rows."""
    stage = AnomalyStage().fit(split_by_time(frame, FRACTION)[0])
    return stage, training_outputs(stage, frame)


def metric_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c, kind in frame.schema.items() if kind == pl.Float64]


def outputs_of(stage: AnomalyStage, frame: pl.DataFrame) -> pl.DataFrame:
    """row and the stage-5 columns of every row of frame."""
    out = stage.transform(frame.drop("row")).with_columns(frame["row"])
    return out.select("row", *(f.name for f in stage.features()))


def training_outputs(stage: AnomalyStage, frame: pl.DataFrame) -> pl.DataFrame:
    """row and the stage-5 columns of the training rows, computed on the whole frame."""
    train_rows = split_by_time(frame, FRACTION)[0]["row"]
    return outputs_of(stage, frame).filter(pl.col("row").is_in(train_rows.implode()))


def rewrite(frame: pl.DataFrame, rows: pl.Series, how: str) -> pl.DataFrame:
    """frame with every metric of the given rows scaled by 1000, shuffled among them, or replaced by garbage."""
    rng = np.random.default_rng(11)
    at = rows.to_numpy()  # row numbers are positions
    columns = {}
    for name in metric_columns(frame):
        values = frame[name].to_numpy().copy()
        if how == "scaled":
            values[at] *= 1000.0
        elif how == "shuffled":
            values[at] = values[rng.permutation(at)]
        else:
            values[at] = rng.choice([1e15, -1e9, 0.0, np.nan], size=len(at))  # NaN becomes a missing value
        columns[name] = pl.Series(name, values, nan_to_null=True)
    return frame.with_columns(**columns)


@pytest.mark.parametrize("how", ["scaled", "shuffled", "garbage"])
def test_validation_rows_influence_nothing_fitted_nor_any_training_output(frame, fitted, how):
    stage, outputs = fitted
    validation_rows = split_by_time(frame, FRACTION)[1]["row"]
    changed = rewrite(frame, validation_rows, how)
    assert not changed.filter(pl.col("row").is_in(validation_rows.implode())).equals(
        frame.filter(pl.col("row").is_in(validation_rows.implode()))
    )

    # The split is cut per host in time only: the rewrite moves no row across it.
    assert split_bounds(changed, FRACTION).equals(split_bounds(frame, FRACTION))
    train = split_by_time(changed, FRACTION)[0]
    assert train.equals(split_by_time(frame, FRACTION)[0])

    refitted = AnomalyStage().fit(train)
    assert refitted.fitted_statistics() == stage.fitted_statistics()
    assert training_outputs(refitted, changed).equals(outputs)


def test_training_outputs_do_not_look_at_validation_rows_at_all(frame, fitted):
    stage, outputs = fitted
    assert outputs_of(stage, split_by_time(frame, FRACTION)[0]).equals(outputs)


@pytest.mark.parametrize("change", ["one row", "one host"])
def test_changing_training_rows_does_change_the_statistics(frame, fitted, change):
    stage, outputs = fitted
    train = split_by_time(frame, FRACTION)[0]
    rows = train["row"][:1] if change == "one row" else train.filter(pl.col("host") == train["host"][0])["row"]
    changed = rewrite(frame, rows, "scaled")
    refitted = AnomalyStage().fit(split_by_time(changed, FRACTION)[0])
    assert refitted.fitted_statistics() != stage.fitted_statistics()
    assert not training_outputs(refitted, changed).equals(outputs)
