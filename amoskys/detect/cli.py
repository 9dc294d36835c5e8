"""``amoskys detect``: follow the bus, score every host live, raise alerts (see ``service``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from amoskys.cliutil import add_config_option, add_store_option, store_path
from amoskys.config import Config

PROGRESS_EVERY_S = 10.0


def register(commands) -> None:
    detect = commands.add_parser(
        "detect", help="score the bus's telemetry live and raise alerts",
        description="Subscribe to the bus, compute every host's features as its snapshots arrive, score them with "
        "the live model set from the registry (the Score Junction: calibrated 0-100 threat, levels, explanations), "
        "and write detections and alerts to the store. Stop with Ctrl-C or SIGTERM.",
    )  # fmt: skip
    add_store_option(detect)
    detect.add_argument("--bus", metavar="HOST:PORT", help="the bus's address (default: agent.bus)")
    detect.add_argument("--certs", metavar="DIR", type=Path, help="certificates folder (default: agent.certs)")
    detect.add_argument("--registry", metavar="DIR", type=Path, help="model registry (default: detect.registry)")
    detect.add_argument("--model", metavar="REF", help="registry entry id or model name (default: detect.model, live)")
    detect.add_argument("--duration", metavar="SECONDS", type=float, help="stop after this long (default: run until stopped)")
    add_config_option(detect)
    detect.set_defaults(handler=run_detect)

    retrain = commands.add_parser(
        "retrain", help="train a new live model set; promote it if not worse",
        description="Run the pipeline on the store's telemetry with the analysts' verdicts as labels, report feature "
        "drift (population stability) against the active model's training data, train a candidate live model set, "
        "score the same holdout with it and the active set, and promote the candidate unless it is worse.",
    )  # fmt: skip
    add_store_option(retrain)
    retrain.add_argument("--since", metavar="T", help="only telemetry from T on (ISO time, epoch seconds, or e.g. 24h)")
    retrain.add_argument("--if-drifted", action="store_true",
                         help="retrain only when some feature's PSI reaches detect.drift_psi")  # fmt: skip
    add_config_option(retrain)
    retrain.set_defaults(handler=run_retrain)

    up = commands.add_parser(
        "up", help="run the whole platform on this machine",
        description="Start the bus, the host agent (and the SNMP agent when snmp.targets is set) and the detector, "
        "supervise them, and stop them all on Ctrl-C. Without a live model trained on this machine's telemetry, "
        "collect a baseline first, then train, then detect.",
    )  # fmt: skip
    add_store_option(up)
    up.add_argument("--baseline-seconds", type=float, default=300.0, metavar="N",
                    help="telemetry to collect before training when there is no model yet (default 300)")  # fmt: skip
    up.add_argument("--duration", type=float, metavar="SECONDS", help="stop everything after detecting this long")
    up.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard (there is none yet)")
    add_config_option(up)
    up.set_defaults(handler=run_up)


@dataclass
class LiveModel:
    """What the detector scores with: the registry entry, its model and the fitted stage 5 it was trained on."""

    entry_id: str
    model: object
    anomaly: object
    data_folder: Path


def load_live_model(config: Config, registry_dir: Path | None = None, ref: str | None = None) -> LiveModel:
    from amoskys.models.registry import Registry
    from amoskys.pipeline.outputs import load_stage

    registry = Registry(registry_dir or config.detect.registry)
    entry = registry.find(ref or config.detect.model)
    data = Path(entry.card["data"]["folder"])
    return LiveModel(entry.id, registry.load(entry), load_stage(data), data)


def build_detector(config: Config, store, live: LiveModel, started_ns: int | None = None):
    """A ``service.Detector`` on store with the live model, checked against the features the stream computes,
    and config's retrain schedule; rows before started_ns (default: now) are warm-up."""
    from amoskys.detect.canonical import StreamCanonical
    from amoskys.detect.features import StreamFeatures
    from amoskys.detect.junction import Junction
    from amoskys.detect.policy import policy_of
    from amoskys.detect.schedule import RetrainSchedule
    from amoskys.detect.service import Detector

    features = StreamFeatures(config, live.anomaly, optional=_optional_metrics(live.model.features_))
    junction = Junction(live.model, live.entry_id, policy_of(config.detect))
    junction.check_features(features.names)
    canonical = StreamCanonical(config.pipeline.interval_seconds, config.pipeline.max_fill_seconds, features.optional)
    detector = Detector(store, canonical, features, junction, config.detect.stale_seconds, started_ns)
    detector.retraining = RetrainSchedule.of(config, store.path)
    return detector


def run_detect(args: argparse.Namespace, config: Config) -> int:
    from amoskys.bus.client import BusClient
    from amoskys.detect.service import warmup_position
    from amoskys.store.store import Store

    # the registry and model given here are the ones a scheduled retrain promotes into and swaps from
    config = replace(config, detect=replace(config.detect, registry=args.registry or config.detect.registry,
                                            model=args.model or config.detect.model))  # fmt: skip
    live = load_live_model(config)
    path = store_path(args, config)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.duration:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True  # a stop by signal must not wait for it
        timer.start()
    address, certs = args.bus or config.agent.bus, args.certs or config.agent.certs
    with Store.open(path) as store:
        detector = build_detector(config, store, live)
        position = warmup_position(path, detector.features.lookback_s)
        print(f"amoskys detect: model {live.entry_id}, bus {address}, store {path}; warming up from position "
              f"{position}", flush=True)  # fmt: skip
        client = BusClient(address, certs, config.detect.name)
        last = [time.monotonic()]

        def progress(d) -> None:
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                stale = d.stale_hosts()
                print(f"amoskys detect: {d.counts.line()}" + (f"; stale: {', '.join(stale[:5])}" if stale else ""),
                      flush=True)  # fmt: skip

        detector.run(client, stop, config.detect.micro_batch_ms / 1000, position, on_progress=progress)
    print(f"amoskys detect: stopped after {detector.counts.line()}", file=sys.stderr, flush=True)
    return 0


def _optional_metrics(features: list[str]) -> tuple[str, ...]:
    """The optional sensor metrics a model was trained with (they are features of their own name)."""
    from amoskys.telemetry import catalogue

    return tuple(m.name for m in catalogue.METRICS if m.optional and m.name in set(features))


def run_retrain(args: argparse.Namespace, config: Config) -> int:
    from amoskys.detect.retrain import retrain

    report = retrain(config, store_path(args, config), args.since, args.if_drifted)
    print("\n".join(report.lines()))
    return 0


def run_up(args: argparse.Namespace, config: Config) -> int:
    from amoskys.detect.up import up

    counts = up(config, store_path(args, config), args.baseline_seconds, args.duration, getattr(args, "config", None))
    if counts:
        print(f"amoskys up: {counts['scored_rows']:,} rows scored, {counts['alerts_opened']} alerts "
              f"(`amoskys alerts list` shows them)")  # fmt: skip
    return 0
