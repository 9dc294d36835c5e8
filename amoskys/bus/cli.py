"""``amoskys certs init|add-agent`` and ``amoskys bus serve|stats``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

from amoskys.cliutil import add_config_option, add_json_option, add_store_option, print_json, store_path
from amoskys.config import Config

DEFAULT_CERTS = "default: the config's bus.certs, data/certs"


def register(commands) -> None:
    _register_certs(commands)
    _register_bus(commands)


def _register_certs(commands) -> None:
    certs = commands.add_parser(
        "certs", help="certificates and keys of the bus and its agents",
        description="Create the bus's CA, server certificate and agent credentials.",
    )  # fmt: skip
    actions = certs.add_subparsers(title="actions", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init", help="create a CA, the bus's certificate and agents",
        description="Create DIR/ca.crt, ca.key, server.crt, server.key (SAN: 127.0.0.1, localhost and every --san) "
        "and, for each --agents name, DIR/agents/NAME.crt, .key, .ed25519 and .ed25519.pub. Refuses a DIR that "
        "already holds a CA.",
    )  # fmt: skip
    init.add_argument("dir", nargs="?", type=Path, metavar="DIR", help=f"certificates folder ({DEFAULT_CERTS})")
    init.add_argument("--san", action="append", default=[], metavar="NAME",
                      help="another DNS name or IP address of the bus (repeatable)")  # fmt: skip
    init.add_argument("--agents", default="", metavar="A,B", help="agents to create credentials for")
    init.set_defaults(handler=run_certs_init)
    add = actions.add_parser(
        "add-agent", help="credentials for one more agent",
        description="Issue an agent's TLS client certificate (CN=NAME) and Ed25519 signing key. A running bus "
        "picks the new key up without a restart.",
    )  # fmt: skip
    add.add_argument("name", metavar="NAME", help="agent name: letters, digits, '.', '_', '-'")
    add.add_argument("--certs", type=Path, metavar="DIR", help=f"certificates folder holding the CA ({DEFAULT_CERTS})")
    add.set_defaults(handler=run_certs_add_agent)


def _register_bus(commands) -> None:
    bus = commands.add_parser(
        "bus", help="the event bus: serve it, see its counters",
        description="The event bus: signed envelopes in over mutual TLS, durably stored.",
    )  # fmt: skip
    actions = bus.add_subparsers(title="actions", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve", help="run the bus until Ctrl-C / SIGTERM",
        description="Serve the EventBus on the config's bus.host:bus.port until SIGINT or SIGTERM, then stop "
        "accepting, finish the commits in flight and close the store. SIGHUP reloads the agents' keys.",
    )  # fmt: skip
    add_store_option(serve)
    serve.add_argument("--certs", type=Path, metavar="DIR", help=f"certificates folder ({DEFAULT_CERTS})")
    serve.add_argument("--host", help="address to listen on (default: the config's bus.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, metavar="P", help="port (default: the config's bus.port, 7878; 0: any free)")
    serve.add_argument("--metrics-port", type=int, metavar="P",
                       help="Prometheus port (default: the config's bus.metrics_port, 7879; 0: off)")  # fmt: skip
    add_config_option(serve)
    serve.set_defaults(handler=run_serve)
    stats = actions.add_parser(
        "stats", help="the bus's persisted counters",
        description="Envelopes by ack status and events by outcome, as persisted in the store: works while the "
        "bus is down (the live counters are on the metrics endpoint).",
    )  # fmt: skip
    add_store_option(stats)
    add_json_option(stats)
    stats.set_defaults(handler=run_stats)


def run_certs_init(args: argparse.Namespace, config: Config) -> int:
    from amoskys.bus import certs

    folder = args.dir or config.bus.certs
    agents = tuple(name.strip() for name in args.agents.split(",") if name.strip())
    written = certs.init(folder, sans=tuple(args.san), agents=agents)
    print(f"created a CA and the bus's certificate in {folder} ({len(written)} files)"
          + (f", agents: {', '.join(agents)}" if agents else ""))  # fmt: skip
    print(f"next: amoskys bus serve --certs {folder}   |   amoskys certs add-agent NAME --certs {folder}")
    return 0


def run_certs_add_agent(args: argparse.Namespace, config: Config) -> int:
    from amoskys.bus import certs

    folder = args.certs or config.bus.certs
    written = certs.issue_agent(folder, args.name)
    print(f"agent {args.name}: " + ", ".join(str(path) for path in written))
    return 0


def run_serve(args: argparse.Namespace, config: Config) -> int:
    from amoskys.bus.server import BusServer
    from amoskys.errors import InputError

    overrides = {"host": args.host, "port": args.port, "metrics_port": args.metrics_port}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    for key in ("port", "metrics_port"):
        if not 0 <= overrides.get(key, 0) <= 65535:
            raise InputError(f"--{key.replace('_', '-')} must be 0-65535, not {overrides[key]}")
    bus_config = replace(config.bus, **overrides)
    logging.basicConfig(level=logging.WARNING, format="amoskys bus: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    server = BusServer(store_path(args, config), args.certs or bus_config.certs, bus_config,
                       max_future_s=config.store.max_future_seconds).start()  # fmt: skip

    def reload_keys(*_) -> None:
        print(f"amoskys bus: reloaded {server.reload_keys()} agent keys", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, reload_keys)
    where = server.listening
    print(f"amoskys bus: listening on {where.address} (mutual TLS, {len(server.keys)} agent keys from "
          f"{server.certs_dir}), store {server.store_path}, metrics {where.metrics or 'off'}", flush=True)  # fmt: skip
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    envelopes, events, *_ = server.accounting.snapshot()
    answered, stored = sum(envelopes.values()), events["stored"]
    print(f"amoskys bus: stopped after {answered:,} envelopes, {stored:,} events stored", flush=True)
    return 0


def run_stats(args: argparse.Namespace, config: Config) -> int:
    from amoskys.bus.ledger import persisted_counts
    from amoskys.store import Store

    with Store.open(store_path(args, config), create=False) as store:
        counts = persisted_counts(store)
        counts["store"] = str(store.path)
    if args.json:
        print_json(counts)
    else:
        print(render_stats(counts))
    return 0


def render_stats(counts: dict) -> str:
    events = counts["events"]
    lines = [f"bus counters persisted in {counts['store']}"]
    lines.append("events     " + ("  ".join(f"{outcome} {n:,}" for outcome, n in events.items()) or "none yet"))
    envelopes = counts["envelopes"]
    parts = []
    for status, reasons in envelopes.items():
        total = sum(reasons.values())
        detail = ", ".join(f"{reason} {n:,}" for reason, n in reasons.items() if reason)
        parts.append(f"{status} {total:,}" + (f" ({detail})" if detail else ""))
    lines.append("envelopes  " + ("  ".join(parts) or "none yet"))
    agents = counts["agents"]
    highest = ", ".join(f"{agent} {seq}" for agent, seq in agents.items())
    lines.append(f"stored     {counts['stored_envelopes']:,} envelopes from {len(agents)} agents"
                 + (f" (highest seq: {highest})" if agents else ""))  # fmt: skip
    return "\n".join(lines)
