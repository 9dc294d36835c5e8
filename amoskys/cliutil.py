"""Options and output helpers that several subcommands share."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amoskys.config import STORE_ENV, Config


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", metavar="DB", type=Path,
        help=f"store file (default: ${STORE_ENV}, else the config's store.path, else data/amoskys.db)",
    )  # fmt: skip


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """--config after the subcommand too (SUPPRESS: it does not hide one given before it)."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for machines instead of text")


def store_path(args: argparse.Namespace, config: Config) -> Path:
    return args.store if args.store is not None else config.store.path


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
