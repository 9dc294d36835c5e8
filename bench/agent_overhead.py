"""CPU cost of the host agent: collect, seal and queue durably, once a second.

    python bench/agent_overhead.py [--seconds 20] [--interval 1] [--flow]

Runs the real ``HostCollector``, seals each snapshot into a signed envelope and appends
it to a real outbox (SQLite, WAL, synchronous=FULL) in a temporary folder, at the given
interval, the way ``amoskys agent host`` does minus the network. Prints the process's
CPU time (user + system, all threads) as a share of one core over the wall time, and
the mean cost of each step. With ``--flow`` the flow collector is measured the same way
in a second pass (its ``ss`` child process counts too). Target: under 2% of one core.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from amoskys.agents.flow import FlowCollector
from amoskys.agents.host import HostCollector
from amoskys.agents.outbox import Outbox
from amoskys.bus.signing import seal


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the flow collector's `ss`)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure(collector, seconds: float, interval: float, folder: Path) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    steps = {"collect": 0.0, "seal_and_queue": 0.0}
    rounds = events = 0
    with Outbox.open(folder / f"{collector.name}.db") as outbox:
        started_cpu, started = cpu_seconds(), time.monotonic()
        next_at = started
        while time.monotonic() - started < seconds:
            t0 = time.process_time()
            batch = collector.collect()
            t1 = time.process_time()
            outbox.append(lambda seq: seal(batch, "bench", seq, key), events=len(batch))  # as the runtime does
            t2 = time.process_time()
            steps["collect"] += t1 - t0
            steps["seal_and_queue"] += t2 - t1
            rounds += 1
            events += len(batch)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        wall, cpu = time.monotonic() - started, cpu_seconds() - started_cpu
    collector.close()
    return {"rounds": rounds, "events": events, "wall_s": wall, "cpu_s": cpu, "core_pct": 100.0 * cpu / wall,
            **{f"{k}_ms": 1000.0 * v / max(rounds, 1) for k, v in steps.items()}}  # fmt: skip


def report(name: str, figures: dict[str, float]) -> None:
    print(f"{name}: {figures['core_pct']:.2f}% of one core ({figures['cpu_s']:.3f} s CPU over {figures['wall_s']:.1f} s, "
          f"{figures['rounds']} rounds, {figures['events']} events); per round: collect {figures['collect_ms']:.2f} ms, "
          f"seal + durable append {figures['seal_and_queue_ms']:.2f} ms (CPU)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--flow", action="store_true", help="also measure the flow collector")
    args = parser.parse_args(argv)
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, interval {args.interval:g} s")
    with tempfile.TemporaryDirectory() as folder:
        host = measure(HostCollector(), args.seconds, args.interval, Path(folder))
        report("host agent", host)
        if args.flow:
            report("flow agent", measure(FlowCollector(), args.seconds, args.interval, Path(folder)))
    print("target: under 2% of one core:", "met" if host["core_pct"] < 2.0 else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
