"""``amoskys store stats`` and ``amoskys store query``."""

from __future__ import annotations

import argparse
import json
import sys

from amoskys.cliutil import add_json_option, add_store_option, print_json, store_path
from amoskys.config import Config
from amoskys.errors import InputError
from amoskys.store.stats import render_stats, store_stats
from amoskys.store.store import Store
from amoskys.timeutil import format_ns, parse_time

DEFAULT_COLUMNS = ("cpu_user_pct", "mem_used_bytes", "load_avg_1m", "net_rx_bytes_total", "net_tx_bytes_total",
                   "tcp_attempt_fails_total")  # fmt: skip


def register(commands) -> None:
    store = commands.add_parser("store", help="inspect the telemetry store", description="Inspect the telemetry store.")
    actions = store.add_subparsers(title="actions", metavar="ACTION", required=True)

    stats = actions.add_parser("stats", help="what the store holds", description="Counts, time range, data source and ingest outcomes of the store.")  # fmt: skip
    add_store_option(stats)
    add_json_option(stats)
    stats.set_defaults(handler=run_stats)

    query = actions.add_parser(
        "query", help="metric snapshots of one host",
        description="Print a host's metric snapshots in a time range, oldest first, with the labeled incident "
        "(if any) each falls in. Times are ISO 8601 (2026-01-01T12:00:00Z), epoch seconds, or an age like 15m, 2h, 7d.",
    )  # fmt: skip
    add_store_option(query)
    query.add_argument("--host", required=True, help="host id, as `amoskys store stats` lists them")
    query.add_argument("--since", metavar="T", help="first time to include (default: the beginning)")
    query.add_argument("--until", metavar="T", help="time to stop before (default: now)")
    query.add_argument("--limit", type=int, default=1000, metavar="N", help="at most N snapshots (default 1000)")
    query.add_argument(
        "--metrics", metavar="A,B,...",
        help=f"metrics to show as columns in text output (default: {','.join(DEFAULT_COLUMNS)}); JSON has all",
    )  # fmt: skip
    add_json_option(query)
    query.set_defaults(handler=run_query)


def run_stats(args: argparse.Namespace, config: Config) -> int:
    with Store.open(store_path(args, config), create=False) as store:
        stats = store_stats(store)
    if args.json:
        print_json(stats)
    else:
        print(render_stats(stats))
    return 0


def run_query(args: argparse.Namespace, config: Config) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if args.limit < 1:
        raise InputError("--limit must be at least 1")
    with Store.open(store_path(args, config), create=False) as store:
        hosts = store.hosts()
        if args.host not in hosts:
            known = ", ".join(hosts[:10]) + (" ..." if len(hosts) > 10 else "") or "none"
            raise InputError(f"no host {args.host!r} in {store.path} (hosts: {known})")
        snapshots = store.snapshots(args.host, since, until, limit=args.limit + 1)
        incidents = store.incidents(args.host)
    truncated = len(snapshots) > args.limit
    snapshots = snapshots[: args.limit]

    def incident_at(ts_ns: int) -> str | None:
        return next((i.kind for i in incidents if i.start_ns <= ts_ns < i.end_ns), None)

    if args.json:  # JSON Lines: one snapshot per line
        for snap in snapshots:
            row = {"host": snap.host, "ts": format_ns(snap.ts_ns), "ts_ns": snap.ts_ns, "agent": snap.agent,
                   "incident": incident_at(snap.ts_ns), "metrics": snap.metrics}  # fmt: skip
            sys.stdout.write(json.dumps(row) + "\n")
    else:
        columns = args.metrics.split(",") if args.metrics else list(DEFAULT_COLUMNS)
        print(_table(snapshots, columns, incident_at))
    if truncated:
        print(f"(stopped at --limit {args.limit}; more snapshots match)", file=sys.stderr)
    elif not snapshots:
        print("(no snapshots in that time range)", file=sys.stderr)
    return 0


def _table(snapshots, columns: list[str], incident_at) -> str:
    header = ["time", "agent", *columns, "incident"]
    rows = [
        [format_ns(s.ts_ns), s.agent, *(_number(s.metrics.get(c)) for c in columns), incident_at(s.ts_ns) or ""]
        for s in snapshots
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows])


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
