"""Cold-chain pack: how far, how long and how fast a sensor's temperature leaves its safe range.

Vaccines and medicines are kept within [min_celsius, max_celsius] (2-8 °C by default);
what matters for a spoiled batch is the size of an excursion, the time spent outside
the range, and how fast the temperature moves (a door left open, a failing compressor).
Each row stands for one interval of time, so durations count it in full: the first row
out of range already means one interval out. An excursion runs until a row back inside
the range, across gaps in the data (out before and after a gap: out throughout, as far
as anyone can tell). Hosts without a sensor get null features.

Settings (``[packs.cold_chain]``): ``min_celsius``, ``max_celsius``,
``max_rate_celsius_per_min`` (optional: adds a feature for changes faster than it) and
``interval_seconds`` (the frame's row spacing; default: derived from the frame).
"""

from __future__ import annotations

import polars as pl

from amoskys.errors import ConfigError
from amoskys.pipeline.features import DOMAIN, Feature, FeatureDef, seconds
from amoskys.pipeline.features import same_host
from amoskys.pipeline.packs._common import add_on_host_time, check_settings, interval_ns, roll, slope_per_s

NAME = "cold_chain"
SENSOR = "sensor_temperature_celsius"
SPEC = {
    "min_celsius": (float, 2.0),
    "max_celsius": (float, 8.0),
    "max_rate_celsius_per_min": (float, None),
    "interval_seconds": (float, None),
}
HOUR_S = 3600.0
RATE_WINDOWS_S = (60.0, 300.0)


def _settings(raw: dict) -> dict:
    settings = check_settings(NAME, raw, SPEC)
    if settings["min_celsius"] >= settings["max_celsius"]:
        raise ConfigError(f"packs.{NAME}.min_celsius must be below max_celsius "
                          f"(got {settings['min_celsius']} and {settings['max_celsius']})")  # fmt: skip
    for key in ("max_rate_celsius_per_min", "interval_seconds"):
        if settings[key] is not None and settings[key] <= 0:
            raise ConfigError(f"packs.{NAME}.{key} must be positive (got {settings[key]})")
    return settings


def _defs(settings: dict, step_s: float) -> list[FeatureDef]:
    low, high, limit = settings["min_celsius"], settings["max_celsius"], settings["max_rate_celsius_per_min"]
    temp = pl.col(SENSOR)
    excursion = pl.max_horizontal(low - temp, temp - high, 0.0)
    out = excursion > 0
    # The start of the current excursion: the ts of its first row, carried forward (a host's first row out of
    # range starts one, so the fill never carries another host's start into an excursion).
    began = pl.when(out & ~(out.shift(1) & same_host()).fill_null(False)).then(pl.col("ts")).forward_fill()
    current = pl.when(out).then((pl.col("ts") - began).dt.total_nanoseconds() / 1e9 + step_s).otherwise(0.0)
    rates = {w: slope_per_s(temp, w) * 60.0 for w in RATE_WINDOWS_S}
    rows = [
        ("temp_excursion_celsius", "celsius", f"Degrees outside [{low}, {high}] °C; 0 inside.", None, excursion),
        ("temp_out_of_range_s_1h", "seconds", f"Seconds outside [{low}, {high}] °C within the last hour.",
         seconds(HOUR_S), roll(out.cast(pl.Float64) * step_s, "sum", HOUR_S)),
        ("temp_excursion_duration_s", "seconds", "How long the current excursion has lasted, counting this row's "
         "interval; 0 inside the range.", None, current),
        *((f"temp_rate_celsius_per_min_{int(w)}s", "celsius/min", f"Rate of change: least-squares slope of the "
           f"temperature over the last {int(w)} s, in °C per minute.", seconds(w), rate) for w, rate in rates.items()),
    ]  # fmt: skip
    if limit is not None:
        rows.append(("temp_rate_excess_celsius_per_min", "celsius/min", f"How far the 60 s rate of change "
                     f"(either way) exceeds {limit} °C/min; 0 within it.", seconds(RATE_WINDOWS_S[0]),
                     (rates[RATE_WINDOWS_S[0]].abs() - limit).clip(lower_bound=0.0)))  # fmt: skip
    # A host without a sensor reads null, and so does everything derived from it.
    return [FeatureDef(Feature(name, DOMAIN, unit, text, (SENSOR,), window, pack=NAME),
                       pl.when(temp.is_not_null()).then(expr))
            for name, unit, text, window, expr in rows]  # fmt: skip


class ColdChainPack:
    name = NAME
    enabled_by_default = False
    description = "Temperature excursions of cold-chain sensors: size, time out of range, rate of change."

    def settings(self, raw: dict) -> dict:
        return _settings(raw)

    def features(self, settings: dict) -> list[Feature]:
        return [d.feature for d in _defs(_settings(settings), 1.0)]

    def compute(self, frame: pl.DataFrame, flows: pl.DataFrame, settings: dict) -> pl.DataFrame:
        settings = _settings(settings)
        if SENSOR not in frame.columns:
            raise ConfigError(f"pack {NAME} needs {SENSOR}, which no host reports")
        step_s = interval_ns(frame, NAME, settings["interval_seconds"]) / 1e9 if frame.height else 1.0
        return add_on_host_time(frame, [d.expr.alias(d.feature.name) for d in _defs(settings, step_s)])


PACK = ColdChainPack()
