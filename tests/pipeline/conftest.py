"""Fixtures shared by the pipeline tests."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pytest

from amoskys.config import SimulatorConfig
from amoskys.pipeline.canonical import CanonicalReport, build_canonical, canonical_features, present_optional_metrics
from amoskys.pipeline.features import Feature
from amoskys.pipeline.source import simulated


@dataclass(frozen=True)
class SimulatedSplit:
    """A labeled simulated fleet after stage 1, cut per host: the first 80% of its time range is train."""

    canonical: pl.DataFrame
    train: pl.DataFrame
    val: pl.DataFrame
    features: list[Feature]
    report: CanonicalReport
    data_source: str


@pytest.fixture(scope="session")
def simulated_split() -> SimulatedSplit:
    raw = simulated(SimulatorConfig(hosts=3, duration_seconds=3600))
    canonical, report = build_canonical(raw, 5.0, 60.0)
    first, last = pl.col("ts").min().over("host"), pl.col("ts").max().over("host")
    in_train = pl.col("ts") < first + (last - first) * 0.8
    return SimulatedSplit(canonical, canonical.filter(in_train), canonical.filter(~in_train),
                          canonical_features(present_optional_metrics(raw.snapshots)), report, raw.data_source)  # fmt: skip
