"""``amoskys run``: the main job (what ``make run`` runs): the live platform end to end, on this machine.

1. Settings for a short run, written to ``FOLDER/amoskys.toml`` (FOLDER: the store's
   folder, ``data/run`` by default, so that the embedded store ``amoskys up`` fills at
   the default 5 s stays apart): the configuration given (or the defaults) with the
   host agent and the pipeline at one sample per second, the bus on a free loopback
   port, and the pipeline reading this run's telemetry only.
2. ``amoskys up`` with them (``detect.up``): credentials when missing, the bus, the host
   agent, a baseline of this machine, the pipeline and the live model set trained on
   it, then the detector scoring live.
3. Unless ``--no-attack``: after ``ATTACK_AFTER_S`` of live scoring (once settled), an attack on
   loopback for ``ATTACK_S`` (a connect scan of a closed port on 127.0.0.1 plus a CPU
   burn, ``detect.workload``: bounded in time and count).
4. After ``--live-seconds`` everything stops in order; this run's alerts are printed,
   and whether the attack was caught.
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from amoskys.config import Config, dump
from amoskys.detect.workload import closed_port, cpu_burn, loopback_scan
from amoskys.timeutil import NS, format_ns

DEFAULT_STORE = Path("data/run/amoskys.db")
SAMPLE_S = 1.0  # the host agent's interval and the pipeline's grid in this run
ATTACK_AFTER_S = 20.0
ATTACK_S = 25.0
CAUGHT_WITHIN_S = 30.0  # an alert opening this long after the attack began counts as catching it


def register(commands) -> None:
    parser = commands.add_parser(
        "run", help="the main job: the live platform end to end on this machine, with an attack on loopback",
        description="Start the bus and the host agent, collect a baseline of this machine, train the live model "
        "set on it, score live, run a bounded attack on loopback (a port scan and a CPU burn) unless --no-attack, "
        "then stop everything and print this run's alerts. Samples every second; files in the store's folder.",
    )  # fmt: skip
    parser.add_argument("--store", metavar="DB", type=Path, default=DEFAULT_STORE,
                        help=f"store file; the run's settings, pipeline outputs and models go beside it "
                             f"(default: {DEFAULT_STORE})")  # fmt: skip
    parser.add_argument("--baseline-seconds", type=float, default=90.0, metavar="N",
                        help="how long to collect this machine's baseline before training (default: 90)")  # fmt: skip
    parser.add_argument("--live-seconds", type=float, default=60.0, metavar="N",
                        help="how long to score live (after settling) before stopping (default: 60)")  # fmt: skip
    parser.add_argument("--no-attack", action="store_true", help="score live without the loopback attack")
    parser.set_defaults(handler=run_main_job)


@dataclass
class Attack:
    """The loopback attack's time span, once it started."""

    start_ns: int = 0
    end_ns: int = 0

    def launch(self) -> None:
        self.start_ns = time.time_ns()
        self.end_ns = self.start_ns + int(ATTACK_S * NS)
        print(f"amoskys run: attack on loopback for {ATTACK_S:g} s: a connect scan of a closed port on 127.0.0.1 "
              "and a CPU burn", flush=True)  # fmt: skip
        for workload in (loopback_scan, cpu_burn):
            threading.Thread(target=workload, args=(ATTACK_S,), daemon=True).start()


def run_main_job(args: argparse.Namespace, config: Config) -> int:
    from amoskys.detect.policy import policy_of
    from amoskys.detect.up import max_window_s, up

    store = args.store
    folder = store.parent
    started_ns = time.time_ns()
    settings = run_settings(config, store, started_ns)
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "amoskys.toml"
    config_file.write_text(dump(settings))
    print(f"amoskys run: settings in {config_file}; samples every second; pipeline outputs and models in "
          f"{settings.pipeline.out}/", flush=True)  # fmt: skip

    attack = Attack()
    settle_s = max_window_s(settings, args.baseline_seconds)  # up's settling before its first score

    def on_detecting() -> None:
        if not args.no_attack:
            timer = threading.Timer(settle_s + ATTACK_AFTER_S, attack.launch)
            timer.daemon = True
            timer.start()

    counts = up(settings, store, args.baseline_seconds, settle_s + args.live_seconds, str(config_file), retrain=True,
                on_detecting=on_detecting)  # fmt: skip
    if not counts:
        return 130  # stopped during the baseline
    print()
    print(f"amoskys run: {counts['scored_rows']:,} rows scored live")
    print(report(store, started_ns, attack, policy_of(settings.detect).floor))
    print()
    print("next:")
    print(f"  amoskys alerts list --store {store}        # then `alerts show ID`, `alerts label ID --verdict ...`")
    print(f"  amoskys models list --data {settings.pipeline.out}")
    print("  amoskys up                                  # the platform on the embedded store, until Ctrl-C")
    return 0


def run_settings(config: Config, store: Path, started_ns: int) -> Config:
    """config for this run: 1 s samples, a free loopback port, files beside store, this run's telemetry only."""
    folder = store.parent
    port = closed_port()  # nothing listens there now: the bus will
    pipeline_out = folder / "pipeline"
    return replace(
        config,
        store=replace(config.store, path=store),
        bus=replace(config.bus, host="127.0.0.1", port=port, metrics_port=0),
        agent=replace(config.agent, bus=f"127.0.0.1:{port}", interval_seconds=SAMPLE_S, outbox_dir=folder / "outbox"),
        pipeline=replace(config.pipeline, out=pipeline_out, interval_seconds=SAMPLE_S, hosts=(),
                         since=format_ns(started_ns), until=""),  # fmt: skip
        detect=replace(config.detect, registry=pipeline_out / "registry", model="live"),
    )


def report(store: Path, started_ns: int, attack: Attack, alert_score: float) -> str:
    """This run's alerts, and whether the attack was caught: a row of it at alert_score or above with the
    port-scan rule, inside an alert."""
    from amoskys.detect.alerts_cli import alerts_table
    from amoskys.store.alerts import first_alerted_hit, read_alerts
    from amoskys.store.store import Store

    step_ns = int(SAMPLE_S * NS)
    first_bucket = attack.start_ns - attack.start_ns % step_ns  # a row is stamped with its bucket's start
    with Store.open(store, create=False) as opened:
        alerts = [a for a in read_alerts(opened) if a.start_ns >= started_ns]
        caught = first_alerted_hit(opened, "port_scan", alert_score, first_bucket,
                                   attack.start_ns + int(CAUGHT_WITHIN_S * NS))  # fmt: skip
    lines = [f"alerts of this run ({store}):", alerts_table(alerts, {})]
    if not attack.start_ns:
        return "\n".join(lines)
    window = f"{format_ns(attack.start_ns)} .. {format_ns(attack.end_ns)}"
    if caught:
        ts, alert = caught
        delay = max(ts - attack.start_ns, 0) / NS
        lines.append(f"attack on loopback ({window}): caught, {delay:.0f} s after it began (port-scan rule, "
                     f"alert {alert.id})")  # fmt: skip
    else:
        lines.append(f"attack on loopback ({window}): NOT caught within {CAUGHT_WITHIN_S:g} s")
    if before := [a for a in alerts if a.start_ns < first_bucket]:
        lines.append(f"alerts before the attack: {len(before)} (false alarms, unless something else happened here)")
    return "\n".join(lines)
