"""``amoskys train``, ``amoskys models list|show`` and ``amoskys score``."""

from __future__ import annotations

import argparse
from pathlib import Path

from amoskys.cliutil import add_config_option, add_json_option, add_store_option, print_json
from amoskys.config import Config


def register(commands) -> None:
    train = commands.add_parser(
        "train", help="train, evaluate and register detectors on a pipeline output folder",
        description="Fit detectors on train_features, set each threshold from training scores, evaluate on "
        "val_features, and register each as a new entry (model files, ONNX export where supported, model card).",
    )  # fmt: skip
    _add_data_options(train)
    train.add_argument("--models", metavar="LIST", help="comma-separated model names (default: all the data allows)")
    train.add_argument("--max-window", type=float, metavar="SECONDS",
                       help="leave out features whose window is longer (e.g. half of a short training span)")
    train.add_argument("--verbose", action="store_true", help="show progress even when not on a terminal")
    add_json_option(train)
    train.set_defaults(handler=train_command)

    models = commands.add_parser("models", help="list or show registered models")
    actions = models.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every registered model, oldest first")
    _add_data_options(listing)
    add_json_option(listing)
    listing.set_defaults(handler=list_command)
    show = actions.add_parser("show", help="one model's card")
    show.add_argument("id", metavar="ID", help="entry id, or a model name for its latest entry")
    _add_data_options(show)
    show.set_defaults(handler=show_command)

    score = commands.add_parser(
        "score", help="score rows with a registered model and print the flagged ones",
        description="Score feature rows (--input) or the store's telemetry (--store, --since) with a registered "
        "model (default: the latest bdh) and print each flagged row with its threat score, level and top features.",
    )  # fmt: skip
    score.add_argument("--model", metavar="ID", help="entry id or model name (default: the latest bdh)")
    _add_data_options(score)
    source = score.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="FILE", type=Path, help="feature file (.parquet or .csv)")
    add_store_option(source)
    score.add_argument("--since", metavar="T", help="with --store: ISO time, epoch seconds or e.g. 2h ago")
    score.add_argument("--all", action="store_true", help="print every row, not only the flagged ones")
    add_json_option(score)
    score.set_defaults(handler=score_command)


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", metavar="DIR", type=Path, help="pipeline output folder (default: the config's pipeline.out)")
    parser.add_argument("--registry", metavar="DIR", type=Path, help="model registry (default: DATA/registry)")
    add_config_option(parser)


def _registry(args: argparse.Namespace, config: Config):
    from amoskys.models.registry import Registry, default_registry

    return Registry(args.registry or default_registry(args.data or config.pipeline.out))


def train_command(args: argparse.Namespace, config: Config) -> int:
    from amoskys.models.train import evaluation_table, train_models

    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else None
    data = args.data or config.pipeline.out
    trained = train_models(data, args.registry, names, verbose=args.verbose, max_window_s=args.max_window)
    if args.json:
        print_json([{"id": t.entry.id, "seconds": t.seconds, "validation": t.evaluation.as_dict()} for t in trained])
    else:
        print(f"validation split of {data} (thresholds from training scores only):")
        print(evaluation_table(trained))
        print(f"registered in {trained[0].entry.folder.parent}/")
    return 0


def list_command(args: argparse.Namespace, config: Config) -> int:
    registry = _registry(args, config)
    entries = registry.entries()
    if args.json:
        print_json([e.card for e in entries])
        return 0
    if not entries:
        print(f"no models in {registry.folder}: run `amoskys train`")
        return 0
    print(f"{'id':<34} {'model':<15} {'data':<10} {'features':>8} {'seconds':>8} {'PR-AUC':>7} {'recall':>7}")
    for e in entries:
        v = e.card.get("validation", {})
        print(f"{e.id:<34} {e.model:<15} {e.card['data']['source']:<10} {len(e.card['features']):>8} "
              f"{e.card['training_seconds']:>8.1f} {_fmt(v.get('pr_auc')):>7} {_fmt(v.get('range_recall')):>7}")  # fmt: skip
    return 0


def show_command(args: argparse.Namespace, config: Config) -> int:
    entry = _registry(args, config).find(args.id)
    print_json({**entry.card, "folder": str(entry.folder)})
    return 0


def score_command(args: argparse.Namespace, config: Config) -> int:
    from amoskys.errors import InputError
    from amoskys.models.score import features_from_store, flagged, read_feature_file, render
    from amoskys.timeutil import parse_time

    registry = _registry(args, config)
    entry = registry.find(args.model)
    model = registry.load(entry)
    if args.input is not None:
        if args.since:
            raise InputError("--since goes with --store; a feature file is scored whole")
        frame = read_feature_file(args.input)
    else:
        store = args.store if args.store is not None else config.store.path
        since = parse_time(args.since) if args.since else None
        data = Path(entry.card["data"]["folder"])  # where the model's fitted stage 5 is
        if not data.is_dir():  # moved with its registry, which sits inside it by default
            data = registry.folder.parent
        frame = features_from_store(store, config, data, since)
    rows = flagged(model, frame, every_row=args.all)
    if args.json:
        print_json({"model": entry.id, "scored": frame.height, "rows": rows})
    else:
        print(render(rows, frame.height, entry.id))
    return 0


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"
