"""``amoskys alerts list|show|label``: what the detector raised, and the analyst's verdicts on it.

A verdict is stored as feedback on the alert; ``amoskys retrain`` turns verdicts into
training labels (true: the alert's rows are an incident; false: they are normal).
"""

from __future__ import annotations

import argparse
import getpass

from amoskys.cliutil import add_json_option, add_store_option, print_json, store_path
from amoskys.config import Config
from amoskys.errors import InputError
from amoskys.store.alerts import Alert, add_feedback, read_alert, read_alerts, read_feedback
from amoskys.store.store import Store
from amoskys.timeutil import format_ns

VERDICTS = {"true": True, "false": False}


def register(commands) -> None:
    alerts = commands.add_parser("alerts", help="list, inspect and label alerts",
                                 description="List, inspect and label the alerts the detector raised.")  # fmt: skip
    actions = alerts.add_subparsers(title="actions", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every alert, newest first", description="Every alert, newest first.")
    add_store_option(listing)
    listing.add_argument("--status", choices=("open", "closed"), help="only alerts with this status")
    add_json_option(listing)
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="one alert in full", description="One alert: scores, models, rule hits, "
                              "top features with their typical range, raw metrics around the peak, verdicts.")  # fmt: skip
    add_store_option(show)
    show.add_argument("id", type=int, help="alert id, as `amoskys alerts list` shows it")
    add_json_option(show)
    show.set_defaults(handler=run_show)

    label = actions.add_parser("label", help="record a verdict", description="Record an analyst's verdict on an "
                               "alert: true (a real incident) or false (a false alarm).")  # fmt: skip
    add_store_option(label)
    label.add_argument("id", type=int, help="alert id")
    label.add_argument("--verdict", required=True, choices=tuple(VERDICTS), help="true: real incident; false: false alarm")
    label.add_argument("--analyst", default=getpass.getuser(), help="who decided (default: the current user)")
    label.add_argument("--note", default="", help="free text kept with the verdict")
    label.set_defaults(handler=run_label)


def run_list(args: argparse.Namespace, config: Config) -> int:
    with Store.open(store_path(args, config), create=False) as store:
        alerts = sorted(read_alerts(store, args.status), key=lambda a: (a.start_ns, a.id), reverse=True)
        verdicts = {f.alert_id: f.verdict for f in read_feedback(store)}  # the latest verdict wins
    if args.json:
        print_json([_summary(a, verdicts.get(a.id)) for a in alerts])
        return 0
    print(alerts_table(alerts, verdicts))
    return 0


def run_show(args: argparse.Namespace, config: Config) -> int:
    with Store.open(store_path(args, config), create=False) as store:
        alert = read_alert(store, args.id)
        feedback = read_feedback(store, args.id)
    if args.json:
        print_json({**_summary(alert, feedback[-1].verdict if feedback else None), "details": alert.details,
                    "feedback": [vars(f) for f in feedback]})  # fmt: skip
        return 0
    print(render_alert(alert))
    for f in feedback:
        print(f"verdict: {_verdict_text(f.verdict)} by {f.analyst} at {format_ns(f.created_ns)}"
              + (f" ({f.note})" if f.note else ""))  # fmt: skip
    return 0


def run_label(args: argparse.Namespace, config: Config) -> int:
    if not args.analyst:
        raise InputError("--analyst must not be empty")
    with Store.open(store_path(args, config), create=False) as store:
        read_alert(store, args.id)  # a clear error for an unknown id
        add_feedback(store, args.id, VERDICTS[args.verdict], args.analyst, args.note)
    print(f"alert {args.id}: verdict {args.verdict} recorded")
    return 0


def alerts_table(alerts: list[Alert], verdicts: dict[int, bool]) -> str:
    """A line per alert: id, host, start, end, peak, level, status, verdict (or "no alerts")."""
    if not alerts:
        return "no alerts"
    header = ("id", "host", "start", "end", "peak", "level", "status", "verdict")
    rows = [(str(a.id), a.host, format_ns(a.start_ns), format_ns(a.end_ns), f"{a.peak_score:.0f}", a.level, a.status,
             _verdict_text(verdicts.get(a.id))) for a in alerts]  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows))


def render_alert(alert: Alert) -> str:
    """An alert as text: the headline, then its explanation and the raw rows around its peak."""
    d = alert.details
    lines = [f"alert {alert.id}: {alert.host}  {alert.level} (peak {alert.peak_score:.0f}/100)  {alert.status}",
             f"  from {format_ns(alert.start_ns)} to {format_ns(alert.end_ns)}, {d.get('rows', '?')} scored rows, "
             f"peak at {format_ns(d['peak_ns']) if 'peak_ns' in d else '?'}"]  # fmt: skip
    if members := d.get("members"):
        lines.append("  models (calibrated 0-100): " + ", ".join(f"{name} {score:.0f}" for name, score in members.items()))
    if rules := d.get("rules"):
        lines.append("  rule hits: " + ", ".join(rules))
    if features := d.get("features"):
        lines.append("  top features (value, typical p5 .. p95 in training):")
    for feature in features or []:
        low, high = feature["typical"]
        value = "missing" if feature["value"] is None else f"{feature['value']:.4g}"
        lines.append(f"    {feature['feature']:<42} {value:>12}   {low:.4g} .. {high:.4g}")
    if context := d.get("context"):
        metrics = [k for k in context[0] if k != "ts_ns"][:6]
        lines.append("  raw metrics around the peak:")
        lines.append("    " + "  ".join(["time".ljust(20), *(m[:18].rjust(18) for m in metrics)]))
        for row in context:
            cells = [f"{row.get(m, float('nan')):.4g}".rjust(18) for m in metrics]
            lines.append("    " + "  ".join([format_ns(row["ts_ns"]).ljust(20), *cells]))
    return "\n".join(lines)


def _summary(alert: Alert, verdict: bool | None) -> dict:
    return {"id": alert.id, "host": alert.host, "start": format_ns(alert.start_ns), "end": format_ns(alert.end_ns),
            "peak_score": alert.peak_score, "level": alert.level, "status": alert.status, "verdict": verdict}  # fmt: skip


def _verdict_text(verdict: bool | None) -> str:
    return "-" if verdict is None else ("true" if verdict else "false")
