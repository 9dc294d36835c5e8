"""Live path throughput: stream features + fast tier (iforest, pca, their live ensemble) + junction, micro-batched.

    python bench/live.py [--hosts 500] [--minutes 10]

A simulated fleet's snapshots arrive in time order, one micro-batch per 5 s grid step
(every host's newest snapshot), through stage 1 on the stream, ``StreamFeatures`` and
the Score Junction (the live ensemble's threat scores, explanations of the rows at the
alert level, the alert policy). Models and stage 5 are fitted first on another
simulated fleet. The detector's lookback (an hour) goes first through the features
untimed, as the detector's warm-up does, so that the timed --minutes run at the steady
state: every window and baseline full, what a detector running for days pays. Prints
events/s (and per CPU-second, every thread of the process counted), the state per host, and, on
the same events, River's Half-Space Trees (score then learn, one event at a time, on the
canonical metrics) as a reference. Target: 50k events/s per core; < 64 KiB per host.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import polars as pl

from amoskys.config import Config, PipelineConfig, SimulatorConfig
from amoskys.detect.canonical import StreamCanonical
from amoskys.detect.features import StreamFeatures
from amoskys.detect.junction import Junction
from amoskys.detect.policy import policy_of
from amoskys.detect.service import one_blas_thread
from amoskys.models import get
from amoskys.pipeline.run import StageClock, compute_features
from amoskys.pipeline.source import simulated


def fitted(config: Config):
    """Stage 5 and a live ensemble, fitted on a small simulated fleet."""
    print("fitting stage 5 and the live ensemble on a small fleet ...", flush=True)
    raw = simulated(SimulatorConfig(hosts=4, duration_seconds=4 * 3600, seed=11))
    made = compute_features(raw, config, StageClock(verbose=False))
    model = get("live").fit(made.train, made.train["label"].to_numpy())
    return made.anomaly, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=10, help="timed, after the untimed hour of warm-up")
    args = parser.parse_args()
    config = Config(pipeline=PipelineConfig())
    anomaly, model = fitted(config)
    canonical, features = StreamCanonical(), StreamFeatures(config, anomaly)
    junction = Junction(model, "live", policy_of(config.detect))
    warm_s = features.lookback_s
    raw = simulated(SimulatorConfig(hosts=args.hosts, duration_seconds=warm_s + args.minutes * 60, seed=12)).snapshots
    raw = raw.drop("label", "incident", strict=False).sort("ts_ns", "host", maintain_order=True)
    names = tuple(c for c in raw.columns if c not in ("host", "ts_ns"))
    hosts = sorted(raw["host"].unique())
    slots = raw["host"].replace_strict(hosts, list(range(len(hosts)))).to_numpy()
    ts, values = raw["ts_ns"].to_numpy(), raw.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
    cuts = np.flatnonzero(np.diff(ts // 5_000_000_000)) + 1
    steps = list(zip([0, *cuts], [*cuts, len(ts)]))
    warm_steps = int(warm_s // 5)
    timed = len(ts) - steps[warm_steps][0]
    print(f"{args.hosts:,} hosts: {warm_steps} grid steps of warm-up (features only), then {timed:,} events timed "
          f"({len(steps) - warm_steps} steps) ...", flush=True)  # fmt: skip
    for lo, hi in steps[:warm_steps]:
        rows = features.push(canonical.push(slots[lo:hi], ts[lo:hi], canonical.raw_matrix(names, values[lo:hi])), hosts)
    junction.judge(rows)  # the last step's rows, untimed: a first call compiles (or loads) the junction's kernels

    gc.freeze()  # as ``Detector.run`` does, and with BLAS on one thread as there
    scored, started, cpu = 0, time.perf_counter(), time.process_time()
    with one_blas_thread():
        for lo, hi in steps[warm_steps:]:
            rows = canonical.push(slots[lo:hi], ts[lo:hi], canonical.raw_matrix(names, values[lo:hi]))
            scored += len(junction.judge(features.push(rows, hosts)).detections)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    rate = timed / seconds
    print(f"amoskys live: {timed:,} events ({scored:,} rows scored) in {seconds:.2f} s = {rate:,.0f} events/s; "
          f"{timed / cpu:,.0f} events per CPU-second")  # fmt: skip
    per_host = features.bytes_per_host() + canonical.state_bytes()
    print(f"state per host: {per_host / 1024:.1f} KiB (target < 64 KiB)")

    from river.anomaly import HalfSpaceTrees

    metrics = [n for n in names if not n.startswith("cpu_core")]
    columns = [names.index(n) for n in metrics]
    sample = min(len(ts), 50_000)  # River is slow: a sample of the events gives its rate
    events = [dict(zip(metrics, row)) for row in np.nan_to_num(values[:sample][:, columns]).tolist()]
    hst = HalfSpaceTrees(seed=0)
    started = time.perf_counter()
    for event in events:
        hst.score_one(event)
        hst.learn_one(event)
    river_rate = sample / (time.perf_counter() - started)
    print(f"River HalfSpaceTrees (score + learn per event, raw metrics only): {river_rate:,.0f} events/s "
          f"on {sample:,} events; amoskys / River: {rate / river_rate:.1f}x")  # fmt: skip
    print(f"target >= 50,000 events/s per core: {'met' if timed / cpu >= 50_000 else 'NOT met'}; "
          f"state < 64 KiB per host: {'met' if per_host < 64 * 1024 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
