"""``amoskys run``: the main job on the embedded default (what ``make run`` runs).

For now: simulate a labeled fleet into the embedded store and summarise the store.
"""

from __future__ import annotations

import argparse

from amoskys.cliutil import add_store_option, store_path
from amoskys.config import Config
from amoskys.simulator.cli import add_simulation_options, run_simulation, simulation_settings, summary, write_to_store
from amoskys.store import Store
from amoskys.store.stats import render_stats, store_stats


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help="the main job: simulate a labeled fleet into the store and summarise it",
        description="Simulate a labeled fleet (settings from the config's [simulator] section, or the options "
        "below) into the store, then summarise what the store holds. Running it again with the same seed adds "
        "nothing: the data is already there.",
    )  # fmt: skip
    add_store_option(parser)
    add_simulation_options(parser)
    parser.set_defaults(handler=run_main_job)


def run_main_job(args: argparse.Namespace, config: Config) -> int:
    settings = simulation_settings(args, config)
    path = store_path(args, config)
    sim = run_simulation(settings)
    with Store.open(path, max_future_s=config.store.max_future_seconds) as store:
        result = write_to_store(sim, store)
        print(summary(sim, str(path), result))
        print()
        print(render_stats(store_stats(store)))
    host = sim.incidents[0].host if sim.incidents else sim.table["host"][0].as_py()
    print()
    print("next:")
    print(f"  amoskys store stats --store {path}")
    print(f"  amoskys store query --store {path} --host {host} --limit 20")
    return 0
