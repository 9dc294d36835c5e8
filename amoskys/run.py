"""``amoskys run``: the main job on the embedded default (what ``make run`` runs).

Pipeline -> train -> score: the feature pipeline on the embedded store, then every
model the data allows trained on its training split and evaluated on its validation
split (the table), then the validation rows scored by the new ``bdh`` ensemble, with
the most threatening rows explained. With an empty store (a fresh clone) the pipeline
works on a labeled simulated fleet and says so in every output; `amoskys simulate` or
the agents fill the store.
"""

from __future__ import annotations

import argparse

from amoskys.cliutil import add_store_option, store_path
from amoskys.config import Config
from amoskys.pipeline.cli import add_pipeline_options, run_pipeline_command

SHOWN_ROWS = 5  # flagged rows explained on the terminal; `amoskys score` shows them all
KEEP_RUNS = 3  # entries per model the main job leaves in the registry (each run adds one per model)


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help="the main job: pipeline -> train -> score on the embedded store",
        description="Run the feature pipeline on the embedded store (see `amoskys pipeline run --help`), train and "
        "evaluate every model the data allows (see `amoskys train --help`), and score the validation rows with the "
        "new bdh ensemble. When the store is empty the pipeline uses a labeled simulated fleet, settings from the "
        "config's [simulator] section, and every output says data_source: simulated.",
    )  # fmt: skip
    add_store_option(parser)
    add_pipeline_options(parser)
    parser.set_defaults(handler=run_main_job)


def run_main_job(args: argparse.Namespace, config: Config) -> int:
    import polars as pl

    from amoskys.models.registry import Registry
    from amoskys.models.score import flagged, render
    from amoskys.models.train import VAL, evaluation_table, train_models

    run_pipeline_command(args, config)
    data = args.out or config.pipeline.out
    print()
    trained = train_models(data, verbose=args.verbose)
    print(f"validation split of {data} (thresholds from training scores only):")
    print(evaluation_table(trained))
    ensemble = next((t.entry for t in reversed(trained) if t.entry.model == "bdh"), trained[-1].entry)
    registry = Registry(ensemble.folder.parent)
    registry.prune(KEEP_RUNS)
    model = registry.load(ensemble)
    val = pl.read_parquet(data / VAL)
    rows = sorted(flagged(model, val), key=lambda row: -row["threat"])
    print()
    print(render(rows, val.height, ensemble.id, limit=SHOWN_ROWS))
    print()
    print("next:")
    print(f"  amoskys models list --data {data}")
    print(f"  amoskys score --data {data} --input {data / VAL}")
    print("  amoskys simulate                 # fill the store with a labeled fleet (or run the agents)")
    print(f"  amoskys store stats --store {store_path(args, config)}")
    return 0
