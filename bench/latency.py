"""End-to-end latency of the live path: from an agent's publish call to the stored threat level.

    python bench/latency.py [--rate 20000] [--hosts 1000] [--seconds 30]

Starts ``amoskys bus serve`` as its own process (mTLS, a fresh store, synchronous=FULL)
and, in this one, the detector ``amoskys detect`` runs (``build_detector``, following
the bus), with stage 5 and the live ensemble fitted first on another simulated fleet
(as bench/live.py does). A publisher process (a thread per agent, each agent its share
of the hosts) then publishes a simulated fleet in two phases:

1. warm-up: the detector's lookback (an hour) of snapshots, as fast as the bus takes
   them, to fill every host's windows; the detector reads it but scores none of it;
2. timed: the next snapshots at --rate events/s (a 5 s grid step of the fleet every
   hosts / rate seconds, the agents' envelopes spread evenly over it), every envelope
   signed as it is sent.

A row's latency runs from its envelope's publish call to the commit of its detection
(the detector reports each batch it stored). Prints the rate offered, the rate scored,
p50/p99/max, and the rows still unscored when the detector was stopped (30 s after the
last publish). Target: p99 < 100 ms at 20k events/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bus_process import start_bus
from live import fitted  # bench/live.py: stage 5 and the live ensemble, fitted on a small fleet

INTERVAL_S = 5.0
AGENTS = 8
DRAIN_S = 30.0  # how long the detector may take after the last publish


def fleet(hosts: int, steps: int):
    """(host names, metric names, per grid step: host indices, ts_ns, values) of a simulated fleet ending now."""
    import polars as pl

    from amoskys.config import SimulatorConfig
    from amoskys.pipeline.source import simulated

    raw = simulated(SimulatorConfig(hosts=hosts, duration_seconds=(steps + 1) * INTERVAL_S, seed=12)).snapshots
    raw = raw.sort("ts_ns", "host", maintain_order=True)
    names = [c for c in raw.columns if c not in ("host", "ts_ns")]
    host_names = sorted(raw["host"].unique().to_list())
    index = raw["host"].replace_strict(host_names, list(range(len(host_names)))).to_numpy()
    ts = raw["ts_ns"].to_numpy()
    ts = ts - ts.min() + time.time_ns() - int((steps + 2) * INTERVAL_S * 1e9)  # the last step just before now
    values = raw.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
    cuts = np.flatnonzero(np.diff(ts // int(INTERVAL_S * 1e9))) + 1
    return host_names, names, [(index[a:b], ts[a:b], values[a:b]) for a, b in zip([0, *cuts], [*cuts, len(ts)])]


def publisher(address: str, certs_dir: str, hosts: int, warm_steps: int, timed_steps: int, rate: float,
              to_main, go) -> None:  # fmt: skip
    """The agents: publish the warm-up steps, wait for go, publish the timed steps at rate; report send times."""
    from amoskys.bus.bus_pb2 import Ack
    from amoskys.bus.client import BusClient
    from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame

    host_names, names, steps = fleet(hosts, warm_steps + timed_steps)
    clients = [BusClient(address, Path(certs_dir), f"agent-{a}", timeout_s=60) for a in range(AGENTS)]
    seq = [0] * AGENTS

    def frame_of(step, agent: int) -> MetricFrame:  # an agent's share of a grid step: the hosts h % AGENTS == agent
        index, ts, values = step
        mine = index % AGENTS == agent
        return MetricFrame(names=names, host_ids=[host_names[h] for h in index[mine]], ts_ns=ts[mine].tolist(),
                           values=values[mine].ravel().tolist())  # fmt: skip

    def publish(agent: int, frame: MetricFrame) -> None:
        seq[agent] += 1
        ack = clients[agent].publish_events([Event(frame=frame)], seq[agent])
        while ack.status == Ack.RETRY:
            time.sleep(ack.retry_after_ms / 1000)
            ack = clients[agent].publish(clients[agent].seal([Event(frame=frame)], seq[agent]))
        if ack.status != Ack.OK:
            raise SystemExit(f"agent-{agent}: {Ack.Status.Name(ack.status)} {ack.reason}")

    def run(work: list[tuple[float, int, object]], sent: list) -> None:
        for due, agent, frame in work:
            frame = frame if isinstance(frame, MetricFrame) else frame_of(steps[frame], agent)  # warm-up: built here
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            sent.append((time.monotonic_ns(), frame))
            publish(agent, frame)

    def in_threads(work: list[list], sent: list[list]) -> None:
        threads = [threading.Thread(target=run, args=(mine, out)) for mine, out in zip(work, sent)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    in_threads([[(0.0, a, k) for k in range(warm_steps)] for a in range(AGENTS)], [[] for _ in range(AGENTS)])
    timed = [[frame_of(step, a) for a in range(AGENTS)] for step in steps[warm_steps:]]  # built before the clock
    bucket = int(INTERVAL_S * 1e9)
    first_timed = int(steps[warm_steps][1].min()) // bucket * bucket  # its canonical row's time: the bucket's start
    to_main.put((sum(len(index) for index, _, _ in steps[:warm_steps]), first_timed))
    go.wait()
    step_s, begin = hosts / rate, time.monotonic() + 0.5
    sent: list[list] = [[] for _ in range(AGENTS)]
    in_threads([[(begin + (k + a / AGENTS) * step_s, a, step[a]) for k, step in enumerate(timed)] for a in range(AGENTS)],
               sent)  # fmt: skip
    to_main.put([(at, host, ts // bucket) for agent in sent for at, frame in agent
                 for host, ts in zip(frame.host_ids, frame.ts_ns)])  # fmt: skip
    for client in clients:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000, help="events/s offered in the timed phase")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30, help="length of the timed phase")
    args = parser.parse_args()

    from amoskys.bus import certs
    from amoskys.bus.client import BusClient
    from amoskys.config import Config, PipelineConfig
    from amoskys.detect.cli import LiveModel, build_detector
    from amoskys.store.store import Store

    config = Config(pipeline=PipelineConfig())
    anomaly, model = fitted(config)
    timed_steps = max(1, round(args.seconds * args.rate / args.hosts))
    with tempfile.TemporaryDirectory() as tmp:
        certs.init(Path(tmp) / "certs", agents=(*(f"agent-{a}" for a in range(AGENTS)), config.detect.name))
        store_path = Path(tmp) / "amoskys.db"
        bus, address = start_bus(Path(tmp), store_path)
        stored_at: dict[tuple[str, int], int] = {}
        bucket = int(INTERVAL_S * 1e9)

        def on_stored(detections) -> None:
            now = time.monotonic_ns()
            for d in detections:
                stored_at[(d.host, d.ts_ns // bucket)] = now

        with Store.open(store_path) as store:
            detector = build_detector(config, store, LiveModel("bench", model, anomaly, Path(tmp)))
            warm_steps = int(detector.features.lookback_s // INTERVAL_S) + 1
            context = mp.get_context("spawn")  # gRPC does not survive fork
            to_main, go = context.Queue(), context.Event()
            proc = context.Process(target=publisher, args=(address, f"{tmp}/certs", args.hosts, warm_steps,
                                                           timed_steps, args.rate, to_main, go))  # fmt: skip
            proc.start()
            print(f"warm-up: {warm_steps} grid steps of {args.hosts:,} hosts ...", flush=True)
            warm_events, detector.started_ns = to_main.get(timeout=1800)  # scored: the timed steps only
            detector.on_stored = on_stored
            stop = threading.Event()
            runner = threading.Thread(target=detector.run, daemon=True,
                                      args=(BusClient(address, Path(tmp) / "certs", config.detect.name), stop,
                                            config.detect.micro_batch_ms / 1000))  # fmt: skip
            runner.start()
            while detector.counts.snapshots < warm_events:
                time.sleep(0.2)
            print(f"timed: {timed_steps} grid steps at {args.rate:,.0f} events/s ...", flush=True)
            go.set()
            sent = to_main.get(timeout=args.seconds * 10 + 600)
            deadline = time.monotonic() + DRAIN_S
            while len(stored_at) < len(sent) and time.monotonic() < deadline:
                time.sleep(0.1)
            stop.set()
            runner.join(60)
            proc.join(60)
        bus.terminate()
        bus.wait(60)

    latencies = np.array([stored_at[(host, b)] - at for at, host, b in sent if (host, b) in stored_at]) / 1e6
    first, last = min(at for at, _, _ in sent), max(at for at, _, _ in sent)
    offered = len(sent) / max((last - first) / 1e9, 1e-9)
    scored = len(latencies)
    if not scored:
        print("error: no timed row was scored", file=sys.stderr)
        return 1
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"latency publish -> stored threat level: {scored:,} of {len(sent):,} rows at {offered:,.0f} events/s "
          f"offered: p50 {p50:,.1f} ms, p99 {p99:,.1f} ms, max {latencies.max():,.1f} ms; "
          f"{len(sent) - scored:,} not scored within {DRAIN_S:.0f} s of the last publish")  # fmt: skip
    print(f"target p99 < 100 ms at 20,000 events/s: "
          f"{'met' if p99 < 100 and scored == len(sent) and offered >= 20_000 * 0.95 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
