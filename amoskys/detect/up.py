"""``amoskys up``: the whole platform on one machine, supervised, until Ctrl-C.

Order of start: credentials (created on first use), the bus, the agents (host; SNMP
when ``snmp.targets`` is set), then the detector. The bus and the agents are child
processes (``amoskys bus serve``, ``amoskys agent ...``) with their output in
``LOGS/NAME.log``; one that dies is restarted, up to ``MAX_RESTARTS`` times. The
detector runs in this process. Without a live model trained on real telemetry (or when
told to retrain), ``up`` first warms up the detection stack (``warm_up_detection``), then,
with the agents started, collects a baseline from them for
``baseline_s``, then runs the pipeline and trains the live model set on it, as child
processes, on the features whose windows fit in half the training span
(``max_window_s``); the detector then scores only once that longest window has moved
past the training's own load (settling). Stopping stops the detector, then the agents,
then the bus (so that what the agents flush on exit is stored).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amoskys.config import Config
from amoskys.errors import InputError, TransportError

MAX_RESTARTS = 3
STOP_TIMEOUT_S = 15.0
LIVE_MODELS = ["iforest", "pca", "live"]  # the fast tier and its ensemble: what the detector scores with


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None
    restarts: int = 0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Platform:
    """The children of one ``up``, and where their files are."""

    config: Config
    store: Path
    logs: Path
    config_file: str | None = None
    children: list[Child] = field(default_factory=list)

    def start_bus(self) -> None:
        bus = self._child("bus", ["bus", "serve", "--store", str(self.store), "--certs", str(self.config.bus.certs),
                                  "--port", str(self.config.bus.port)])  # fmt: skip
        bus.start()
        self.children.append(bus)
        wait_for_bus(self.config, bus)

    def start_agents(self) -> None:
        interval = str(self.config.agent.interval_seconds)
        agents = [self._child("agent-host", ["agent", "host", "--name", "host", "--interval", interval])]
        if self.config.snmp.targets:
            agents.append(self._child("agent-snmp", ["agent", "snmp", "--name", "snmp", "--interval", interval]))
        for agent in agents:
            agent.start()
        self.children += agents

    def watch(self) -> None:
        """Restart a child that died (a few times), with a line saying so."""
        for child in self.children:
            code = child.process.poll()
            if code is None:
                continue
            if child.restarts >= MAX_RESTARTS:
                raise InputError(f"{child.name} keeps exiting (code {code}); see {child.log}")
            child.restarts += 1
            print(f"amoskys up: {child.name} exited with code {code}; restarting ({child.restarts}/{MAX_RESTARTS}), "
                  f"see {child.log}", flush=True)  # fmt: skip
            child.start()

    def run_job(self, name: str, argv: list[str]) -> None:
        """Run an amoskys command to its end as a child, output in LOGS/NAME.log; an error names its last line."""
        job = self._child(name, argv)
        job.start()
        code = job.process.wait()
        if code != 0:
            lines = job.log.read_text(errors="replace").strip().splitlines() or ["(no output)"]
            raise InputError(f"{name} failed (code {code}): {lines[-1]}; see {job.log}")

    def stop(self) -> None:
        for child in reversed(self.children):  # agents before the bus
            child.stop()

    def _child(self, name: str, argv: list[str]) -> Child:
        config = ["--config", self.config_file] if self.config_file else []
        return Child(name, [sys.executable, "-m", "amoskys", *config, *argv], self.logs / f"{name}.log")


def ensure_credentials(config: Config) -> None:
    """The CA, the bus's certificate and the credentials of every agent ``up`` runs, created when missing."""
    from amoskys.bus import certs

    folder = config.bus.certs
    names = ("host", "snmp", config.detect.name)
    if not (folder / "ca.crt").exists():
        certs.init(folder, agents=names)
        print(f"amoskys up: created certificates in {folder}", flush=True)
        return
    for name in names:
        if not certs.agent_paths(folder, name)["cert"].exists():
            certs.issue_agent(folder, name)


def wait_for_bus(config: Config, bus: Child, timeout_s: float = 30.0) -> None:
    from amoskys.bus.client import BusClient

    deadline = time.monotonic() + timeout_s
    address = f"{config.bus.host}:{config.bus.port}"
    with BusClient(address, config.bus.certs, config.detect.name, timeout_s=2.0) as client:
        while True:
            if bus.process.poll() is not None:
                raise InputError(f"the bus exited with code {bus.process.returncode}; see {bus.log}")
            try:
                client.health()
                return
            except TransportError:
                if time.monotonic() > deadline:
                    raise InputError(f"the bus did not answer on {address} within {timeout_s:g} s; see {bus.log}")
                time.sleep(0.3)


def live_model_trained_on_real_data(config: Config):
    """The live model to score with, or None when there is none trained on real telemetry."""
    from amoskys.detect.cli import load_live_model

    try:
        live = load_live_model(config)
    except InputError:
        return None
    return live if _data_source(live.data_folder) == "real" else None


def _data_source(folder: Path) -> str:
    import json

    summary = folder / "pipeline_summary.json"
    return json.loads(summary.read_text()).get("data_source", "unknown") if summary.exists() else "unknown"


def collect_baseline_and_train(config: Config, store: Path, baseline_s: float, stop: threading.Event, platform: Platform,
                               retrain: bool = False):  # fmt: skip
    """Wait baseline_s while the agents fill the store, then pipeline + train the live model set on it.

    The training runs in child processes, and ``up`` warmed up the detection stack before
    starting the agents: this process weighs during the baseline what it will weigh while
    detecting, so that its own memory (the machine's ``mem_used_bytes``) does not jump
    between the two (it did, by 100 MB).
    """
    from tqdm import tqdm

    from amoskys.detect.cli import load_live_model

    why = "retraining" if retrain else "no live model trained on this machine's telemetry yet"
    print(f"amoskys up: {why}: collecting a {baseline_s:g} s baseline, then training", flush=True)
    with tqdm(total=round(baseline_s), desc="baseline", unit="s", disable=None) as bar:
        started = time.monotonic()
        while not stop.wait(1.0) and (elapsed := time.monotonic() - started) < baseline_s:
            platform.watch()
            bar.update(round(elapsed) - bar.n)
    if stop.is_set():
        return None
    out = config.pipeline.out
    platform.run_job("pipeline", ["pipeline", "run", "--store", str(store), "--out", str(out)])
    if _data_source(out) != "real":
        raise InputError(f"no telemetry reached {store} during the baseline; see {platform.logs}")
    window = max_window_s(config, baseline_s)
    platform.run_job("train", ["train", "--data", str(out), "--registry", str(config.detect.registry),
                               "--models", ",".join(LIVE_MODELS), "--max-window", str(window)])  # fmt: skip
    live = load_live_model(config)
    print(f"amoskys up: trained {live.entry_id} on this machine's baseline, features with windows up to {window:g} s "
          f"(log: {platform.logs}/train.log)", flush=True)  # fmt: skip
    return live


def max_window_s(config: Config, baseline_s: float) -> float:
    """The longest feature window a model trained on a baseline of baseline_s may use: half its training span."""
    return baseline_s * config.pipeline.train_fraction / 2


def warm_up_detection() -> None:
    """Run the detection stack once on a tiny simulated fleet: Polars, scikit-learn and the compiled kernels
    loaded (compiled on the first run after an install), so this process weighs what it will while detecting."""
    import numpy as np
    import polars as pl

    from amoskys.config import SimulatorConfig
    from amoskys.detect.canonical import StreamCanonical
    from amoskys.detect.features import StreamFeatures
    from amoskys.models import get
    from amoskys.pipeline.run import StageClock, compute_features
    from amoskys.pipeline.source import simulated

    raw, clock = simulated(SimulatorConfig(hosts=1, duration_seconds=1800, seed=1)), StageClock(verbose=False)
    try:
        made = compute_features(raw, Config(), clock)
    finally:
        clock.close()
    get("live").fit(made.train).assess(made.val.head(10))
    snapshots = raw.snapshots.drop("host", "label", "incident", strict=False).head(20)
    canonical, features = StreamCanonical(), StreamFeatures(Config(), made.anomaly)
    names = tuple(c for c in snapshots.columns if c != "ts_ns")
    values = snapshots.select(names).cast(pl.Float64).to_numpy()
    rows = canonical.push(np.zeros(len(values), dtype=np.int64), snapshots["ts_ns"].to_numpy(),
                          canonical.raw_matrix(names, values))  # fmt: skip
    features.push(rows, ["warm-up"])


def up(config: Config, store: Path, baseline_s: float, duration_s: float | None, config_file: str | None = None,
       retrain: bool = False, on_detecting: Callable[[], None] | None = None) -> dict:  # fmt: skip
    """Run the platform until Ctrl-C, SIGTERM or duration_s of detection; returns the detector's counts.

    retrain: collect a baseline and train even when a live model exists; on_detecting: called once the
    detector starts.
    """
    from amoskys.bus.client import BusClient
    from amoskys.detect.cli import build_detector
    from amoskys.detect.service import warmup_position
    from amoskys.store.store import Store

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    ensure_credentials(config)
    live = None if retrain else live_model_trained_on_real_data(config)
    if live is None:  # a baseline comes: with this process at the weight it will have while detecting
        print("amoskys up: loading the detection stack (the first run after an install compiles it: about a "
              "minute)", flush=True)  # fmt: skip
        warm_up_detection()
    platform = Platform(config, store, store.parent / "logs", config_file)
    try:
        platform.start_bus()
        platform.start_agents()
        print(f"amoskys up: bus on {config.bus.host}:{config.bus.port} (metrics on :{config.bus.metrics_port}), "
              f"agents {', '.join(c.name for c in platform.children[1:])}, store {store}, logs {platform.logs}/",
              flush=True)  # fmt: skip
        settle_s = 0.0
        if live is None:
            live = collect_baseline_and_train(config, store, baseline_s, stop, platform, retrain)
            if live is None:
                return {}
            # the windows hold the training's own load (CPU, disk) until they have moved past it
            settle_s = max_window_s(config, baseline_s)
        if duration_s:
            timer = threading.Timer(duration_s, stop.set)
            timer.daemon = True
            timer.start()
        with Store.open(store) as opened:
            detector = build_detector(config, opened, live, started_ns=time.time_ns() + int(settle_s * 1e9))
            position = warmup_position(store, detector.features.lookback_s)
            settling = f", scoring after {settle_s:g} s of settling" if settle_s else ""
            print(f"amoskys up: detecting with {live.entry_id}{settling}; watch it with `amoskys alerts list "
                  f"--store {store}`" + (f" (stopping in {duration_s:g} s)" if duration_s else " (Ctrl-C stops "
                  "everything)"), flush=True)  # fmt: skip
            client = BusClient(f"{config.bus.host}:{config.bus.port}", config.bus.certs, config.detect.name)
            if on_detecting is not None:
                on_detecting()
            detector.run(client, stop, config.detect.micro_batch_ms / 1000, position,
                         on_progress=lambda _: platform.watch())  # fmt: skip
        return {"model": live.entry_id, **vars(detector.counts)}
    finally:
        platform.stop()
        print("amoskys up: stopped the detector, the agents and the bus", flush=True)

