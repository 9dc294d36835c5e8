"""The batch feature pipeline, stage by stage: store -> five stages -> split -> outputs.

Stages 1-4 only look at each host's past, so they run on the whole time range; the
split then cuts each host's range in time, stage 5 is fitted on the training rows
only and applied to all rows (a validation row may look back at training rows, as a
live detector would, but nothing fitted ever sees a validation row).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from tqdm import tqdm

from amoskys.config import Config
from amoskys.errors import InputError
from amoskys.pipeline import packs
from amoskys.pipeline.anomaly import AnomalyStage
from amoskys.pipeline.canonical import CanonicalReport, build_canonical, canonical_features, present_optional_metrics
from amoskys.pipeline.cross import cross_defs
from amoskys.pipeline.features import Feature, apply
from amoskys.pipeline.outputs import (
    pipeline_summary, save_stage, writable, write_datasets, write_metadata, write_summary,
)  # fmt: skip
from amoskys.pipeline.plots import make_plots
from amoskys.pipeline.source import RawTelemetry, read_store, simulated
from amoskys.pipeline.split import split_slices, train_mask
from amoskys.pipeline.temporal import temporal_defs, temporal_features
from amoskys.store import Store
from amoskys.timeutil import parse_time

STAGES = ("read", "canonical", "temporal", "cross_feature", "domain_pack", "split", "anomaly_aware", "outputs", "plots")


@dataclass
class PipelineResult:
    out_dir: Path
    files: list[Path]
    summary: dict
    train: pl.DataFrame = field(repr=False)
    val: pl.DataFrame = field(repr=False)


class StageClock:
    """Times each stage; on a terminal (or with verbose) shows a line per finished stage."""

    def __init__(self, verbose: bool):
        self.seconds: dict[str, float] = {}
        # disable=None: shown on a terminal only
        self._bar = tqdm(total=len(STAGES), desc="pipeline", unit="stage", disable=False if verbose else None)

    @contextmanager
    def stage(self, name: str):
        self._bar.set_postfix_str(name)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 3)
        self._bar.update(1)
        if not self._bar.disable:
            self._bar.write(f"  {name:<14} {self.seconds[name]:7.2f} s")

    def close(self) -> None:
        self._bar.close()


@dataclass
class Features:
    """What the five stages made of some raw telemetry."""

    canonical: pl.DataFrame
    train: pl.DataFrame
    val: pl.DataFrame
    declared: list[Feature]
    report: CanonicalReport
    anomaly: AnomalyStage  # stage 5, fitted on the training rows


def run_pipeline(config: Config, store_path: Path, out_dir: Path | None = None, verbose: bool = False,
                 raw: RawTelemetry | None = None) -> PipelineResult:  # fmt: skip
    """Run every stage and write the outputs into out_dir (default: the config's pipeline.out), on raw when given,
    else on what ``read_raw`` reads."""
    out_dir = config.pipeline.out if out_dir is None else out_dir
    packs.load(config.pipeline.packs, config.packs)  # a config mistake shows before any work
    with writable(out_dir):  # and so does an output folder that cannot be written
        out_dir.mkdir(parents=True, exist_ok=True)
    clock = StageClock(verbose)
    try:
        with clock.stage("read"):
            raw = read_raw(config, store_path) if raw is None else raw
        made = compute_features(raw, config, clock)
        with clock.stage("outputs"):
            files = write_datasets(out_dir, made.canonical, made.train, made.val, raw.data_source)
            files.append(write_metadata(out_dir, made.declared, made.train, raw.data_source,
                                        made.anomaly.fitted_statistics()))  # fmt: skip
            files.append(save_stage(out_dir, made.anomaly))
        with clock.stage("plots"):
            files += make_plots(out_dir, made.train, made.val, made.declared, raw.data_source)
        summary = pipeline_summary(raw.data_source, made.canonical, made.train, made.val, made.declared,
                                   clock.seconds, made.report)  # fmt: skip
        files.append(write_summary(out_dir, summary))
    finally:
        clock.close()
    return PipelineResult(out_dir, files, summary, made.train, made.val)


def compute_features(raw: RawTelemetry, config: Config, clock: StageClock) -> Features:
    """Stages 1-5 and the split, each timed by clock."""
    settings = config.pipeline
    canonical, frame, report, declared = _stages_1_to_4(raw, config, clock)
    anomaly = AnomalyStage()
    with clock.stage("split"):
        is_train = train_mask(frame, settings.train_fraction)
    with clock.stage("anomaly_aware"):
        # stage 5 learns from its inputs only: no need for a copy of every column
        anomaly.fit(frame.select("host", "ts", *anomaly.key_metrics).filter(is_train))
        frame = anomaly.transform(frame)  # same rows, same order: is_train still holds
        train, val = split_slices(frame, is_train)
    return Features(canonical, train, val, [*declared, *anomaly.features()], report, anomaly)


def features_with(raw: RawTelemetry, config: Config, anomaly: AnomalyStage) -> pl.DataFrame:
    """Every feature of raw's rows, stage 5 from an already fitted stage (the one a model was trained with)."""
    clock = StageClock(verbose=False)
    try:
        _, frame, _, _ = _stages_1_to_4(raw, config, clock)
    finally:
        clock.close()  # a progress bar left open would stay on the terminal
    return anomaly.transform(frame)


def _stages_1_to_4(raw: RawTelemetry, config: Config, clock: StageClock):
    """(stage-1 frame, frame with stages 1-4, stage 1's report, the declarations of stages 1-4)."""
    settings = config.pipeline
    with clock.stage("canonical"):
        canonical, report = build_canonical(raw, settings.interval_seconds, settings.max_fill_seconds)
        if canonical.height == 0:
            raise InputError("no telemetry to work on: no host has two or more samples in the time range")
    with clock.stage("temporal"):
        frame = temporal_features(canonical, settings)
    with clock.stage("cross_feature"):
        frame = apply(frame, cross := cross_defs(settings))
    with clock.stage("domain_pack"):
        loaded = packs.load(settings.packs, config.packs)
        # packs work on the stage-1 frame (their documented input) and add their columns here
        frame = frame.with_columns(packs.compute_all(canonical, raw.flows, loaded).drop(canonical.columns))
    declared = [
        *canonical_features(present_optional_metrics(raw.snapshots)),
        *(d.feature for d in temporal_defs(settings)), *(d.feature for d in cross), *packs.declared(loaded),
    ]  # fmt: skip
    return canonical, frame, report, declared


def read_raw(config: Config, store_path: Path) -> RawTelemetry:
    """The store's telemetry in the configured hosts and time range, or the simulator's when the store is empty."""
    settings = config.pipeline
    if store_path.exists():
        with Store.open(store_path, create=False) as store:
            raw = read_store(
                store,
                hosts=list(settings.hosts) or None,
                since_ns=parse_time(settings.since) if settings.since else None,
                until_ns=parse_time(settings.until) if settings.until else None,
            )
        if raw.snapshots.height:
            return raw
        if settings.hosts or settings.since or settings.until:
            raise InputError(f"{store_path} has no telemetry for the configured hosts and time range")
    return simulated(config.simulator)
