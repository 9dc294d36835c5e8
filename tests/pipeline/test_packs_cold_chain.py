"""The cold-chain pack on a hand-made temperature excursion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest
from pytest import approx

from amoskys.errors import ConfigError
from amoskys.pipeline import packs

SENSOR = "sensor_temperature_celsius"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
# 5 °C, then a ramp of 0.5 °C per 5 s (6 °C/min) from row 9 that leaves 2-8 °C at row 16 and
# reaches 15 °C at row 29; back to 3 °C for rows 30-39, then 1.5 °C (below the range) for rows 40-44.
TEMPS = [5.0] * 9 + [5.0 + 0.5 * (i - 9) for i in range(9, 30)] + [3.0] * 10 + [1.5] * 5
ROWS = len(TEMPS)


def _frame(temps: list[float] = TEMPS) -> pl.DataFrame:
    return pl.DataFrame({
        "host": ["fridge"] * ROWS + ["server"] * ROWS,
        "ts": [START + timedelta(seconds=5 * i) for i in range(ROWS)] * 2,
        "cpu_busy_pct": [10.0] * (2 * ROWS),
        SENSOR: temps + [None] * ROWS,  # the server has no sensor
    }).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


def _compute(frame: pl.DataFrame, settings: dict | None = None) -> pl.DataFrame:
    return packs.compute_all(frame, pl.DataFrame(), packs.load(("cold_chain",), {"cold_chain": settings or {}}))


@pytest.fixture(scope="module")
def fridge() -> pl.DataFrame:
    return _compute(_frame()).filter(pl.col("host") == "fridge")


@pytest.mark.parametrize(
    ("row", "excursion", "out_1h", "duration"),
    [
        (5, 0.0, 0.0, 0.0),
        (15, 0.0, 0.0, 0.0),  # exactly 8 °C is inside
        (16, 0.5, 5.0, 5.0),  # the first row out already counts its interval
        (29, 7.0, 70.0, 70.0),
        (30, 0.0, 70.0, 0.0),
        (40, 0.5, 75.0, 5.0),
        (44, 0.5, 95.0, 25.0),
    ],
)
def test_excursion_size_and_time_out_of_range(fridge, row, excursion, out_1h, duration):
    values = fridge.row(row, named=True)
    assert values["temp_excursion_celsius"] == excursion
    assert values["temp_out_of_range_s_1h"] == out_1h
    assert values["temp_excursion_duration_s"] == duration


def test_rate_of_change(fridge):
    rate_60, rate_300 = fridge["temp_rate_celsius_per_min_60s"], fridge["temp_rate_celsius_per_min_300s"]
    assert rate_60[0] is None  # one sample has no slope
    assert rate_60[5] == approx(0.0, abs=1e-9)
    assert rate_60[20] == approx(6.0)  # the last 60 s (rows 9-20) are all on the ramp
    assert rate_60[29] == approx(6.0)
    assert 0.0 < rate_300[29] < 6.0  # 300 s reach back to the flat start
    assert rate_60[35] < 0.0


def test_rate_limit_adds_a_feature():
    out = _compute(_frame(), {"max_rate_celsius_per_min": 5}).filter(pl.col("host") == "fridge")
    assert out["temp_rate_excess_celsius_per_min"][25] == approx(1.0)
    assert out["temp_rate_excess_celsius_per_min"][5] == 0.0


def test_settings_move_the_range():
    out = _compute(_frame(), {"min_celsius": -20, "max_celsius": -15}).filter(pl.col("host") == "fridge")
    assert out["temp_excursion_celsius"][0] == 20.0


def test_a_host_without_sensor_has_null_features():
    out = _compute(_frame()).filter(pl.col("host") == "server")
    names = [f.name for f in packs.available()["cold_chain"].features({})]
    assert out.select(pl.col(names).null_count()).row(0) == (ROWS,) * len(names)


def test_frame_without_sensor_column_is_a_config_error():
    with pytest.raises(ConfigError, match=f"^pack cold_chain needs {SENSOR}, which no host reports$"):
        _compute(_frame().drop(SENSOR))


def test_a_future_change_never_moves_an_earlier_value(fridge):
    cut = 25
    changed = _compute(_frame(TEMPS[:cut] + [40.0, -10.0] * 10)).filter(pl.col("host") == "fridge")
    assert changed.head(cut).equals(fridge.head(cut))
    assert not changed.tail(ROWS - cut).equals(fridge.tail(ROWS - cut))


def test_an_excursion_never_runs_on_into_the_next_host():
    # The fridge ends out of range; a second fridge that starts out of range starts its own excursion.
    second = _frame().filter(pl.col("host") == "fridge").with_columns(host=pl.lit("fridge2"), **{SENSOR: pl.lit(1.5)})
    out = _compute(pl.concat([_frame(), second]).sort("host", "ts")).filter(pl.col("host") == "fridge2")
    assert out["temp_excursion_duration_s"][0] == 5.0
    assert out["temp_out_of_range_s_1h"][0] == 5.0
    assert out["temp_rate_celsius_per_min_60s"][0] is None
