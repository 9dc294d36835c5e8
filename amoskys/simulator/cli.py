"""``amoskys simulate``: labeled telemetry for a fleet, into the store or a Parquet file."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from amoskys.cliutil import add_store_option, store_path
from amoskys.config import Config, SimulatorConfig
from amoskys.errors import InputError
from amoskys.simulator.generate import DEFAULT_START_NS, Simulation, simulate
from amoskys.simulator.incidents import INCIDENT_KINDS
from amoskys.simulator.sinks import to_parquet, to_store
from amoskys.store import Store, WriteResult
from amoskys.timeutil import NS, format_ns, now_ns, parse_time


def register(commands) -> None:
    parser = commands.add_parser(
        "simulate", help="generate labeled telemetry for a fleet of hosts",
        description="Generate realistic telemetry for N hosts (diurnal baseline, noise, every canonical metric) with "
        f"labeled incidents injected: {', '.join(INCIDENT_KINDS)}. Writes into the store (default) or a Parquet "
        "file. Deterministic under --seed. Everything it writes is marked data_source: simulated.",
    )  # fmt: skip
    add_simulation_options(parser)
    parser.add_argument(
        "--start", metavar="T",
        help=f"time of the first sample: ISO 8601, epoch seconds, or 'now' for the DURATION before now "
        f"(default {format_ns(DEFAULT_START_NS)}, so that a seed always gives the same data)",
    )  # fmt: skip
    target = parser.add_mutually_exclusive_group()
    add_store_option(target)
    target.add_argument("--out", metavar="FILE.parquet", type=Path,
                        help="write a Parquet file (and FILE.incidents.parquet) instead of the store")  # fmt: skip
    parser.set_defaults(handler=run_simulate)


def add_simulation_options(parser: argparse.ArgumentParser) -> None:
    defaults = SimulatorConfig()
    parser.add_argument("--hosts", type=int, metavar="N", help=f"hosts to simulate (default {defaults.hosts})")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"length of the run (default {defaults.duration_seconds:g})")  # fmt: skip
    parser.add_argument("--interval", type=float, metavar="SECONDS",
                        help=f"seconds between samples (default {defaults.interval_seconds:g})")  # fmt: skip
    parser.add_argument("--seed", type=int, metavar="S", help=f"random seed (default {defaults.seed})")


def run_simulate(args: argparse.Namespace, config: Config) -> int:
    settings = simulation_settings(args, config)
    start_ns = DEFAULT_START_NS
    if args.start == "now":
        start_ns = now_ns() - int(settings.duration_seconds * NS)
    elif args.start:
        start_ns = parse_time(args.start)
    sim = run_simulation(settings, start_ns)
    if args.out is not None:
        incidents_path = to_parquet(sim, args.out)
        print(summary(sim, f"{args.out} (incidents: {incidents_path})"))
        return 0
    path = store_path(args, config)
    with Store.open(path, max_future_s=config.store.max_future_seconds) as store:
        result = write_to_store(sim, store)
    print(summary(sim, str(path), result))
    return 0


def simulation_settings(args: argparse.Namespace, config: Config) -> SimulatorConfig:
    """The config's simulator section with any command-line options laid over it."""
    base = config.simulator
    return SimulatorConfig(
        hosts=base.hosts if args.hosts is None else args.hosts,
        duration_seconds=base.duration_seconds if args.duration is None else args.duration,
        interval_seconds=base.interval_seconds if args.interval is None else args.interval,
        seed=base.seed if args.seed is None else args.seed,
    )


def run_simulation(settings: SimulatorConfig, start_ns: int = DEFAULT_START_NS) -> Simulation:
    with tqdm(total=settings.hosts, desc="simulating", unit="host", disable=None) as bar:
        try:
            return simulate(
                settings.hosts, settings.duration_seconds, settings.seed,
                interval_s=settings.interval_seconds, start_ns=start_ns, progress=bar.update,
            )  # fmt: skip
        except ValueError as exc:
            raise InputError(str(exc)) from None


def write_to_store(sim: Simulation, store: Store) -> WriteResult:
    with tqdm(total=sim.table.num_rows, desc="storing", unit="row", unit_scale=True, disable=None) as bar:
        return to_store(sim, store, progress=bar.update)


def summary(sim: Simulation, destination: str, result: WriteResult | None = None) -> str:
    """A few lines on what was simulated and where it went."""
    table = sim.table
    labeled = sum(table["label"].to_pylist())
    hosts = len(set(table["host"].to_pylist()))
    first, last = table["ts_ns"][0].as_py(), table["ts_ns"][-1].as_py()
    kinds = Counter(i.kind for i in sim.incidents)
    lines = [
        f"simulated    {hosts} hosts x {table.num_rows // hosts:,} samples every {sim.interval_s:g}s "
        f"({format_ns(first)} .. {format_ns(last)}), seed {sim.seed}, data_source: {sim.data_source}",
        f"incidents    {len(sim.incidents)}: " + ", ".join(f"{kind} {kinds[kind]}" for kind in INCIDENT_KINDS if kinds[kind]),
        f"labels       {labeled:,} of {table.num_rows:,} rows inside incidents ({labeled / table.num_rows:.1%})",
        f"written to   {destination}",
    ]
    if result is not None:
        line = f"store        {result.stored:,} stored, {result.duplicate:,} already there, {result.rejected:,} rejected"
        lines.append(line + "".join(f"\n  rejected: {p}" for p in result.problems))
    return "\n".join(lines)
