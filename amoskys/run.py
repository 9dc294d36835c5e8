"""``amoskys run``: the main job on the embedded default (what ``make run`` runs).

For now: the feature pipeline on the embedded store. With an empty store (a fresh
clone) the pipeline works on a labeled simulated fleet and says so in every output;
`amoskys simulate` or the agents fill the store.
"""

from __future__ import annotations

import argparse

from amoskys.cliutil import add_store_option, store_path
from amoskys.config import Config
from amoskys.pipeline.cli import add_pipeline_options, run_pipeline_command


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help="the main job: the feature pipeline on the embedded store",
        description="Run the feature pipeline on the embedded store (see `amoskys pipeline run --help`). When the "
        "store is empty it uses a labeled simulated fleet, settings from the config's [simulator] section, and "
        "every output says data_source: simulated.",
    )  # fmt: skip
    add_store_option(parser)
    add_pipeline_options(parser)
    parser.set_defaults(handler=run_main_job)


def run_main_job(args: argparse.Namespace, config: Config) -> int:
    status = run_pipeline_command(args, config)
    print()
    print("next:")
    print("  amoskys simulate                 # fill the store with a labeled fleet (or run the agents)")
    print(f"  amoskys store stats --store {store_path(args, config)}")
    return status
