"""``amoskys pipeline run``: stored telemetry to ML-ready datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

from amoskys.cliutil import add_config_option, add_store_option, store_path
from amoskys.config import Config


def register(commands) -> None:
    pipeline = commands.add_parser("pipeline", help="turn stored telemetry into ML-ready datasets",
                                   description="The batch feature pipeline.")  # fmt: skip
    actions = pipeline.add_subparsers(title="actions", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run", help="run the five feature stages and write datasets, metadata, summary and plots",
        description="Read telemetry from the store (the simulator's, marked data_source: simulated, when the store "
        "holds none), resample it, compute the five feature stages, split each host's time range into train and "
        "validation, and write CSV + Parquet datasets, feature_metadata.json, pipeline_summary.json and four plots. "
        "Settings come from the [pipeline] and [packs.NAME] sections of the configuration.",
    )  # fmt: skip
    add_store_option(run)
    add_config_option(run)
    add_pipeline_options(run)
    run.set_defaults(handler=run_pipeline_command)


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", type=Path, help="output folder (default: the config's pipeline.out, data/pipeline)")
    parser.add_argument("--verbose", action="store_true", help="show stage progress even when not on a terminal")


def run_pipeline_command(args: argparse.Namespace, config: Config) -> int:
    from amoskys.pipeline.run import run_pipeline  # polars, scikit-learn, matplotlib: only when needed

    result = run_pipeline(config, store_path(args, config), args.out, verbose=args.verbose)
    print(render_summary(result.summary, result.out_dir, result.files))
    return 0


def render_summary(summary: dict, out_dir: Path, files: list[Path]) -> str:
    rows, stages = summary["rows"], summary["features_per_stage"]
    source = summary["data_source"]
    lines = [
        f"data source  {source}" + ("  (the store holds no telemetry: a labeled simulated fleet)" if source == "simulated" else ""),
        f"hosts        {summary['host_count']}   from {summary['time_range']['start']} to {summary['time_range']['end']}",
        f"rows         {rows['canonical']:,} canonical: train {rows['train']:,}, validation {rows['val']:,}",
        f"features     {summary['feature_count']}: " + ", ".join(f"{stage} {n}" for stage, n in stages.items()),
        "seconds      " + ", ".join(f"{stage} {s:.2f}" for stage, s in summary["stage_seconds"].items()),
        f"written to   {out_dir}/",
        *(f"               {name}" for name in sorted(p.name for p in files)),
    ]
    return "\n".join(lines)
