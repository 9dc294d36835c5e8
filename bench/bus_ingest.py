"""Durable ingest through the bus over mutual TLS: events/s committed, publish-to-ack latency.

    python bench/bus_ingest.py [--events 1000000] [--batch 500] [--processes 2] [--threads 16]

Starts ``amoskys bus serve`` as its own process on a fresh store (synchronous=FULL) and
loopback port, then --processes publisher processes with --threads agents each (one
thread per agent, its own certificate and key, so sequence numbers and snapshot times
advance per agent). Every envelope carries one MetricFrame of --batch snapshots with 8
canonical metrics; envelopes are built and signed before the clock starts, so the
figures are the bus's: TLS, size and signature checks, parsing, replay window, schema
checks, group commit, ack. Prints events/s (acked OK and counted in the store), and
the p50/p99 publish-to-ack latency. Target: at least 100k events/s on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from bus_process import start_bus

START_NS = time.time_ns() - 2 * 86400 * 10**9  # two days ago: old enough, never in the future
METRICS = ("cpu_user_pct", "cpu_system_pct", "cpu_idle_pct", "mem_used_bytes", "net_rx_bytes_total",
           "net_tx_bytes_total", "load_avg_1m", "process_count")  # fmt: skip
HOSTS = 50


def build_envelopes(client, agent: str, count: int, batch: int) -> list:
    from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame

    envelopes = []
    for seq in range(1, count + 1):
        rows = range((seq - 1) * batch, seq * batch)
        frame = MetricFrame(
            names=list(METRICS),
            host_ids=[f"{agent}-h{i % HOSTS:02d}" for i in rows],
            ts_ns=[START_NS + i * 1000 for i in rows],
            values=[v for i in rows for v in (10.0 + i % 50, 3.0, 60.0, 2e9 + i, 1e6 + i * 1500.0, 5e5 + i * 900.0,
                                              0.7, 211.0)],
        )  # fmt: skip
        envelopes.append(client.seal([Event(frame=frame)], seq))
    return envelopes


def publisher_process(address: str, certs_dir: str, agents: list[str], per_agent: int, batch: int,
                      ready, results) -> None:  # fmt: skip
    """One publisher process: a thread per agent, each publishing its envelopes one after the other."""
    from amoskys.bus.bus_pb2 import Ack
    from amoskys.bus.client import BusClient

    clients = [BusClient(address, Path(certs_dir), agent, timeout_s=60) for agent in agents]
    work = [(client, build_envelopes(client, client.agent, per_agent, batch)) for client in clients]
    latencies: list[float] = []
    stored = [0]
    retries = [0]
    lock = threading.Lock()

    def run(client, envelopes) -> None:
        mine, ok_events, retried = [], 0, 0
        for envelope in envelopes:
            sent = time.perf_counter()
            ack = client.publish(envelope)
            while ack.status == Ack.RETRY:
                retried += 1
                time.sleep(ack.retry_after_ms / 1000)
                ack = client.publish(envelope)
            mine.append(time.perf_counter() - sent)
            if ack.status != Ack.OK:
                raise SystemExit(f"{client.agent}: {Ack.Status.Name(ack.status)} {ack.reason}")
            ok_events += ack.stored
        with lock:
            latencies.extend(mine)
            stored[0] += ok_events
            retries[0] += retried

    threads = [threading.Thread(target=run, args=item) for item in work]
    ready.wait()  # every process has built its envelopes: start together
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put((stored[0], latencies, retries[0], time.process_time() - cpu_started))
    for client in clients:
        client.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16, help="agents (threads) per publisher process")
    args = parser.parse_args()

    from amoskys.bus import certs

    agents = [[f"bench-p{p}-t{t}" for t in range(args.threads)] for p in range(args.processes)]
    publishers = args.processes * args.threads
    per_agent = max(1, args.events // (args.batch * publishers))
    total = per_agent * args.batch * publishers
    with tempfile.TemporaryDirectory() as tmp:
        certs.init(Path(tmp) / "certs", agents=tuple(a for group in agents for a in group))
        store = Path(tmp) / "bus.db"
        bus, address = start_bus(Path(tmp), store)
        print(f"bus ingest: {total:,} events in {total // args.batch:,} envelopes of {args.batch} "
              f"(MetricFrame, 8 metrics), {publishers} agents in {args.processes} processes, "
              f"mTLS on {address}, synchronous=FULL")  # fmt: skip
        context = mp.get_context("spawn")  # gRPC does not survive fork
        ready, results = context.Barrier(args.processes + 1), context.Queue()
        procs = [
            context.Process(target=publisher_process,
                            args=(address, f"{tmp}/certs", group, per_agent, args.batch, ready, results))
            for group in agents
        ]  # fmt: skip
        for proc in procs:
            proc.start()
        ready.wait()
        cpu_before, started = cpu_seconds(bus.pid), time.perf_counter()
        outcomes = [results.get(timeout=600) for _ in procs]
        seconds = time.perf_counter() - started
        bus_cpu = cpu_seconds(bus.pid) - cpu_before
        for proc in procs:
            proc.join()
        bus.terminate()
        bus.wait(60)
        stored = sum(o[0] for o in outcomes)
        latencies = sorted(lat for o in outcomes for lat in o[1])
        in_store = sqlite3.connect(store).execute("SELECT COUNT(*) FROM host_metrics").fetchone()[0]
    if stored != total or in_store != total:
        print(f"error: {stored:,} events acked, {in_store:,} in the store, of {total:,}", file=sys.stderr)
        return 1
    rate = stored / seconds
    p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
    print(f"  committed {rate:>9,.0f} events/s ({len(latencies) / seconds:,.0f} envelopes/s) in {seconds:.1f} s; "
          f"publish-to-ack p50 {p50:.1f} ms  p99 {p99:.1f} ms; {sum(o[2] for o in outcomes)} RETRY answers")
    publishers_cpu = sum(o[3] for o in outcomes)
    print(f"  CPU: bus process {bus_cpu:.1f} s ({bus_cpu / seconds * 100:.0f}% of one core, "
          f"{bus_cpu / len(latencies) * 1e6:,.0f} us per envelope), publishers {publishers_cpu:.1f} s, "
          f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(f"  target >= 100,000 events/s: {'met' if rate >= 100_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
