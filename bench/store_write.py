"""Committed events per second into the store, in batches of 500 small events.

    python bench/store_write.py [--events 300000] [--batch 500] [--in-flight 8]

Each event is a host metric snapshot with 8 canonical metrics. Batches are submitted
by one producer with up to --in-flight batches awaiting their commit, the way the bus
acks many agents at once; the writer group-commits whatever is waiting. Prints the
committed events/s and the p50/p99 submit-to-durable latency per batch, once with
each batch sent as one MetricFrame (the bulk form, which the target is for) and once
as 500 separate HostMetrics messages. Target: at least 150k events/s on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from amoskys.store import Store
from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics, MetricFrame

START_NS = 1_767_225_600_000_000_000


def make_snapshots(total: int, hosts: int = 50) -> list[tuple[str, int, dict[str, float]]]:
    snapshots = []
    for i in range(total):
        host, step = i % hosts, i // hosts
        metrics = {
            "cpu_user_pct": 10.0 + (i % 50), "cpu_system_pct": 3.0, "cpu_idle_pct": 80.0 - (i % 50) * 0.5,
            "mem_used_bytes": 2e9 + step, "net_rx_bytes_total": 1e6 + step * 1500.0,
            "net_tx_bytes_total": 5e5 + step * 900.0, "load_avg_1m": 0.7, "process_count": 211.0,
        }  # fmt: skip
        snapshots.append((f"bench-{host:03d}", START_NS + step * 5 * 10**9, metrics))
    return snapshots


def as_frame(snapshots) -> list[Event]:
    names = list(snapshots[0][2])
    frame = MetricFrame(
        names=names,
        host_ids=[host for host, _, _ in snapshots],
        ts_ns=[ts for _, ts, _ in snapshots],
        values=[metrics[name] for _, _, metrics in snapshots for name in names],
    )
    return [Event(frame=frame)]


def as_messages(snapshots) -> list[Event]:
    return [Event(metrics=HostMetrics(host_id=host, ts_ns=ts, metrics=metrics)) for host, ts, metrics in snapshots]


def run(batches: list[list[Event]], events: int, in_flight: int) -> tuple[int, float, list[float]]:
    """Submit every batch to a fresh store; (events stored, seconds, per-batch latencies)."""
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "bench.db") as store:
        pending: collections.deque = collections.deque()
        latencies, stored = [], 0
        started = time.perf_counter()
        for batch in batches:
            if len(pending) >= in_flight:
                submitted, future = pending.popleft()
                stored += future.result().stored
                latencies.append(time.perf_counter() - submitted)
            pending.append((time.perf_counter(), store.submit(batch, agent="bench")))
        for submitted, future in pending:
            stored += future.result().stored
            latencies.append(time.perf_counter() - submitted)
        return stored, time.perf_counter() - started, sorted(latencies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=8)
    args = parser.parse_args()

    snapshots = make_snapshots(args.events)
    chunks = [snapshots[i : i + args.batch] for i in range(0, args.events, args.batch)]
    print(f"store write: {args.events} events (8 metrics each) in {len(chunks)} batches of {args.batch}, "
          f"synchronous=FULL, {args.in_flight} batches in flight")  # fmt: skip
    frame_rate = 0.0
    for form, encode in (("MetricFrame", as_frame), ("HostMetrics", as_messages)):
        stored, seconds, latencies = run([encode(chunk) for chunk in chunks], args.events, args.in_flight)
        if stored != args.events:
            print(f"error: {stored} of {args.events} events stored", file=sys.stderr)
            return 1
        p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
        print(f"  {form:<12} committed {stored / seconds:>9,.0f} events/s   batch latency p50 {p50:5.1f} ms  p99 {p99:5.1f} ms")
        frame_rate = frame_rate or stored / seconds
    print(f"  target >= 150,000 events/s (MetricFrame batches): {'met' if frame_rate >= 150_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
