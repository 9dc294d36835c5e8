"""simulate(): a labeled fleet of hosts as one Arrow table.

>>> sim = simulate(hosts=2, duration_s=600, seed=1)
>>> sim.table.num_rows, sim.table.column_names[:4]
(240, ['host', 'ts_ns', 'label', 'incident'])
>>> from datetime import datetime, timezone
>>> datetime.fromtimestamp(DEFAULT_START_NS // 10**9, timezone.utc).isoformat()
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from amoskys.simulator.baseline import baseline
from amoskys.simulator.effects import EFFECTS
from amoskys.simulator.hosts import draw_profile, host_names
from amoskys.simulator.incidents import INCIDENT_KINDS, Incident, interval_ns, schedule
from amoskys.simulator.metrics import derive
from amoskys.telemetry import catalogue

DEFAULT_START_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


@dataclass
class Simulation:
    table: pa.Table  # one row per host per interval, sorted by host then ts_ns
    incidents: list[Incident]  # sorted by host, start_ns
    seed: int
    interval_s: float
    data_source: str = "simulated"


def simulate(
    hosts: int,
    duration_s: float,
    seed: int,
    interval_s: float = 5.0,
    start_ns: int = DEFAULT_START_NS,
    progress: Callable[[int], None] | None = None,
) -> Simulation:
    """Simulate `hosts` hosts sampled every `interval_s` for `duration_s`, with labeled incidents.

    progress(n) is called with 1 after each host is generated (for a progress bar).
    """
    _check(hosts, duration_s, seed, interval_s)
    samples = math.floor(duration_s / interval_s + 1e-9)
    names = host_names(hosts)
    # Host i draws from its own child sequence, so its profile is the same whatever the fleet
    # size or run length.
    fleet_seq, schedule_seq = np.random.SeedSequence(seed).spawn(2)
    incidents = schedule(names, samples, interval_s, start_ns, np.random.default_rng(schedule_seq))

    step_ns = interval_ns(interval_s)
    incidents_by_host: dict[str, list[Incident]] = defaultdict(list)
    for incident in incidents:
        incidents_by_host[incident.host].append(incident)
    generated = []
    for name, host_seq in zip(names, fleet_seq.spawn(hosts)):
        profile_rng, baseline_rng, effects_rng, metrics_rng = (np.random.default_rng(s) for s in host_seq.spawn(4))
        profile = draw_profile(name, profile_rng)
        drivers = baseline(profile, samples, start_ns / 1e9, interval_s, baseline_rng)
        incident_rows = np.full(samples, -1, dtype=np.int8)
        for incident in incidents_by_host[name]:
            window = slice((incident.start_ns - start_ns) // step_ns, (incident.end_ns - start_ns) // step_ns)
            EFFECTS[incident.kind](drivers, window, profile, effects_rng)
            incident_rows[window] = INCIDENT_KINDS.index(incident.kind)
        columns, per_core = derive(profile, drivers, interval_s, metrics_rng)
        generated.append(GeneratedHost(columns, per_core, incident_rows))
        if progress is not None:
            progress(1)

    table = _table(names, samples, start_ns, step_ns, generated)
    return Simulation(table=table, incidents=incidents, seed=seed, interval_s=float(interval_s))


class GeneratedHost(NamedTuple):
    columns: dict[str, np.ndarray]  # host-level metrics by name
    per_core: dict[str, np.ndarray]  # (samples, cores) per CPU mode
    incident_rows: np.ndarray  # index into INCIDENT_KINDS per sample, -1 outside incidents


def _check(hosts: int, duration_s: float, seed: int, interval_s: float) -> None:
    if hosts < 1:
        raise ValueError(f"hosts must be at least 1, got {hosts}")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"interval_s must be a positive number of seconds, got {interval_s}")
    if round(interval_s * 1e9) < 1:
        raise ValueError(f"interval_s must be at least 1 ns, got {interval_s}")
    if not (duration_s >= interval_s and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be finite and at least interval_s ({interval_s}), got {duration_s}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")


def _mode(template: str) -> str:
    """'cpu_core{n}_user_pct' -> 'user'."""
    return template.removeprefix("cpu_core{n}_").removesuffix("_pct")


def _table(
    names: list[str],
    samples: int,
    start_ns: int,
    step_ns: int,
    generated: list[GeneratedHost],
) -> pa.Table:
    host_index = np.repeat(np.arange(len(names), dtype=np.int32), samples)
    incident_index = np.concatenate([host.incident_rows for host in generated])
    is_incident = incident_index >= 0
    arrays: dict[str, pa.Array] = {
        "host": pa.DictionaryArray.from_arrays(host_index, names).cast(pa.string()),
        "ts_ns": pa.array(np.tile(start_ns + step_ns * np.arange(samples, dtype=np.int64), len(names))),
        "label": pa.array(is_incident.astype(np.int8)),
        "incident": pa.DictionaryArray.from_arrays(
            pa.array(np.where(is_incident, incident_index, 0).astype(np.int8), mask=~is_incident),
            list(INCIDENT_KINDS),
        ).cast(pa.string()),
    }
    cores = [host.per_core["user"].shape[1] for host in generated]
    for metric in catalogue.HOST_METRICS:
        if not metric.per_core:
            arrays[metric.name] = pa.array(np.concatenate([host.columns[metric.name] for host in generated]))
            continue
        mode = _mode(metric.name)
        for core in range(max(cores)):
            # Hosts with fewer cores have no such core: null, not zero.
            values = np.concatenate([
                host.per_core[mode][:, core] if core < count else np.zeros(samples)
                for host, count in zip(generated, cores)
            ])
            missing = np.repeat(np.array([core >= count for count in cores]), samples)
            arrays[catalogue.core_metric(core, mode)] = pa.array(values, mask=missing, type=pa.float64())
    return pa.table(arrays)
