"""The ``amoskys`` command: one subcommand per job, each also callable from Python.

Errors that AMOSKYS raises on purpose print as one line and exit with status 1; a
traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys

from amoskys import __version__, config
from amoskys.agents.cli import register as register_agents
from amoskys.bus.cli import register as register_bus
from amoskys.detect.alerts_cli import register as register_alerts
from amoskys.detect.cli import register as register_detect
from amoskys.errors import AmoskysError
from amoskys.models.cli import register as register_models
from amoskys.pipeline.cli import register as register_pipeline
from amoskys.run import register as register_run
from amoskys.simulator.cli import register as register_simulate
from amoskys.store.cli import register as register_store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amoskys",
        description="AMOSKYS: security telemetry and threat detection.",
        epilog="Run `amoskys COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"amoskys {__version__}")
    parser.add_argument(
        "--config", metavar="FILE", help=f"TOML configuration file (default: {config.DEFAULT_CONFIG_FILE} if present)"
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    register_run(commands)
    register_simulate(commands)
    register_store(commands)
    register_bus(commands)
    register_pipeline(commands)
    register_models(commands)
    register_agents(commands)
    register_alerts(commands)
    register_detect(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return args.handler(args, config.load(args.config)) or 0
    except AmoskysError as exc:
        print(f"amoskys: {exc.kind}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("amoskys: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
