"""``amoskys agent host|flow|snmp``: run one agent until Ctrl-C or SIGTERM.

Each agent collects every ``--interval`` seconds, seals batches into its outbox
(``OUTBOX/NAME.db``), and sends them to the bus over mutual TLS with the credentials of
``NAME`` in ``--certs`` (``amoskys certs add-agent NAME``). Options override the
config's ``[agent]`` section (and ``[snmp]`` for the SNMP agent). Progress goes to
stderr: start, stop, and the bus going away and coming back with what is buffered.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from amoskys.cliutil import add_config_option
from amoskys.config import AgentConfig, Config
from amoskys.errors import ConfigError, InputError

KINDS = {
    "host": "this machine's canonical metrics (CPU, memory, disks, network, processes, TCP) from psutil and /proc",
    "flow": "this machine's network flows from its socket tables (TCP counters from `ss`, iproute2)",
    "snmp": "canonical metrics of SNMP devices (--target, repeatable)",
}


def register(commands) -> None:
    agent = commands.add_parser(
        "agent", help="run a telemetry agent (host, flow, snmp)",
        description="Run one agent: collect every interval, buffer on disk, send signed batches to the bus.",
    )  # fmt: skip
    kinds = agent.add_subparsers(title="agents", metavar="KIND", required=True)
    for kind, what in KINDS.items():
        parser = kinds.add_parser(kind, help=what, description=f"Collect {what}, and send it to the bus. "
                                  "Stop with Ctrl-C; what is not sent yet stays in the outbox for the next start.")  # fmt: skip
        _add_common_options(parser)
        parser.set_defaults(handler=run_agent_command, agent_kind=kind)
    snmp = kinds.choices["snmp"]
    snmp.add_argument("--target", action="append", metavar="HOST:PORT",
                      help="an SNMP device to poll; repeat for several (default: the config's snmp.targets)")  # fmt: skip
    snmp.add_argument("--community", metavar="C", help="SNMP v2c community (default: the config's snmp.community)")


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    defaults = AgentConfig()
    parser.add_argument("--bus", metavar="HOST:PORT", help=f"the bus's address (default: agent.bus, {defaults.bus})")
    parser.add_argument("--certs", metavar="DIR", type=Path, help=f"certificates folder (default: agent.certs, {defaults.certs})")  # fmt: skip
    parser.add_argument("--name", metavar="AGENT", help="agent name, as in its certificate (default: agent.name, else the kind)")  # fmt: skip
    parser.add_argument("--interval", metavar="SECONDS", type=float,
                        help=f"seconds between collections (default: agent.interval_seconds, {defaults.interval_seconds:g})")  # fmt: skip
    parser.add_argument("--outbox", metavar="DIR", type=Path,
                        help=f"folder of the on-disk outboxes (default: agent.outbox_dir, {defaults.outbox_dir})")  # fmt: skip
    add_config_option(parser)


def agent_settings(args: argparse.Namespace, config: Config) -> tuple[str, AgentConfig]:
    """The agent's name and its [agent] settings with the command line's options applied, checked."""
    settings = config.agent
    overrides = {"bus": args.bus, "certs": args.certs, "interval_seconds": args.interval, "outbox_dir": args.outbox}
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    name = args.name or settings.name or args.agent_kind
    from amoskys.bus.certs import check_agent_name

    check_agent_name(name)
    parse_address(settings.bus)
    if not settings.interval_seconds > 0:
        raise InputError(f"--interval must be a positive number of seconds (got {settings.interval_seconds:g})")
    if settings.batch_max_events < 1:
        raise ConfigError(f"agent.batch_max_events must be at least 1 (got {settings.batch_max_events})")
    return name, settings


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:7878``) as (host, port); InputError otherwise.

    >>> parse_address("127.0.0.1:7878")
    ('127.0.0.1', 7878)
    """
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"address {address!r} is not HOST:PORT (e.g. 127.0.0.1:7878)")
    return host, int(port)


def make_collector(kind: str, name: str, args: argparse.Namespace, config: Config):
    if kind == "host":
        from amoskys.agents.host import HostCollector

        return HostCollector(source_agent=name)
    if kind == "flow":
        from amoskys.agents.flow import FlowCollector

        return FlowCollector(source_agent=name)
    # snmp: the SNMP engineer's collector, imported only here (pysnmp is heavy)
    targets = tuple(args.target or config.snmp.targets)
    if not targets:
        raise InputError("no SNMP device to poll: give --target HOST:PORT (repeatable) or set snmp.targets")
    for target in targets:
        parse_address(target)
    settings = replace(config.snmp, targets=targets, community=args.community or config.snmp.community)
    try:
        from amoskys.agents.snmp import SnmpCollector
    except ImportError as exc:
        raise ConfigError(f"the SNMP agent is not available: {exc}") from None
    return SnmpCollector(list(targets), settings)


def run_agent_command(args: argparse.Namespace, config: Config) -> int:
    from amoskys.agents.outbox import Outbox
    from amoskys.agents.runtime import AgentRuntime
    from amoskys.bus.certs import load_agent_credentials

    name, settings = agent_settings(args, config)
    _log_to_stderr()
    collector = make_collector(args.agent_kind, name, args, config)  # checks the SNMP targets
    credentials = load_agent_credentials(settings.certs, name)
    from amoskys.bus.client import BusClient

    with Outbox.open(settings.outbox_dir / f"{name}.db", settings.outbox_max_bytes) as outbox:
        client = BusClient(settings.bus, settings.certs, name)
        try:
            runtime = AgentRuntime(collector, client, credentials.signing_key, name, outbox,
                                   settings.interval_seconds, settings.batch_max_events)  # fmt: skip
            with _stop_on_signals(runtime):
                runtime.run()
        finally:
            client.close()
    return 0


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s amoskys agent: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger("amoskys.agents")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _stop_on_signals:
    """SIGINT and SIGTERM stop the runtime cleanly (the previous handlers come back afterwards)."""

    def __init__(self, runtime):
        self.runtime = runtime

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _stop(self, signum, frame) -> None:
        logging.getLogger("amoskys.agents").info("%s: stopping", signal.Signals(signum).name)
        self.runtime.stop()

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
