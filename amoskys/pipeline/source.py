"""Where the pipeline's raw telemetry comes from: the store, or the simulator when the store is empty.

``RawTelemetry`` is the same whichever the source: one row per stored snapshot (host,
ts_ns, one column per metric, null where a snapshot lacks it), the flows, the labeled
incident windows, and the data source (``real``, ``simulated`` or ``mixed``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

import numpy as np
import polars as pl

from amoskys.config import SimulatorConfig
from amoskys.simulator import simulate
from amoskys.store import Store

FLOW_SCHEMA = {"host": pl.String, "ts_ns": pl.Int64, "dst_ip": pl.String, "dst_port": pl.Int64, "protocol": pl.String,
               "bytes_sent": pl.Int64, "bytes_received": pl.Int64}  # fmt: skip
FLOW_COLUMNS = tuple(FLOW_SCHEMA)
INCIDENT_SCHEMA = {"host": pl.String, "kind": pl.String, "start_ns": pl.Int64, "end_ns": pl.Int64}


@dataclass
class RawTelemetry:
    snapshots: pl.DataFrame  # host, ts_ns, then metric columns
    flows: pl.DataFrame  # FLOW_COLUMNS
    incidents: pl.DataFrame  # host, kind, start_ns, end_ns
    data_source: str  # real, simulated or mixed


def read_store(store: Store, hosts: list[str] | None = None, since_ns: int | None = None,
               until_ns: int | None = None) -> RawTelemetry:  # fmt: skip
    """Every snapshot, flow and incident of the given hosts (default all) in [since_ns, until_ns)."""
    db = store.reader()
    host_names = dict(db.execute("SELECT id, name FROM hosts"))
    wanted = [h for h, name in host_names.items() if hosts is None or name in hosts]
    since, until = since_ns or 0, 2**63 - 1 if until_ns is None else until_ns
    marks = ",".join("?" * len(wanted))
    rows = db.execute(
        f"SELECT metric_set_id, host_id, ts_ns, vals FROM host_metrics WHERE host_id IN ({marks}) "
        "AND ts_ns >= ? AND ts_ns < ? ORDER BY metric_set_id",
        (*wanted, since, until),
    ).fetchall()
    metric_sets = {i: json.loads(names) for i, names in db.execute("SELECT id, names FROM metric_sets")}
    parts = []
    for set_id, grouped in groupby(rows, key=itemgetter(0)):
        group = list(grouped)
        names = metric_sets[set_id]
        values = np.frombuffer(b"".join(row[3] for row in group), dtype="<f8").reshape(len(group), len(names))
        frame = pl.DataFrame({"host": [host_names[row[1]] for row in group],
                              "ts_ns": np.array([row[2] for row in group], dtype=np.int64)})  # fmt: skip
        parts.append(frame.with_columns(pl.Series(name, values[:, i]) for i, name in enumerate(names)))
    snapshots = pl.concat(parts, how="diagonal") if parts else pl.DataFrame(schema={"host": pl.String, "ts_ns": pl.Int64})
    flows = pl.DataFrame(
        db.execute(
            f"SELECT h.name, f.ts_ns, f.dst_ip, f.dst_port, f.protocol, f.bytes_sent, f.bytes_received FROM flows f "
            f"JOIN hosts h ON h.id = f.host_id WHERE f.host_id IN ({marks}) AND f.ts_ns >= ? AND f.ts_ns < ?",
            (*wanted, since, until),
        ).fetchall(),
        schema=FLOW_SCHEMA,
        orient="row",
    )
    incidents = pl.DataFrame(
        [(i.host, i.kind, i.start_ns, i.end_ns) for i in store.incidents() if hosts is None or i.host in hosts],
        schema=INCIDENT_SCHEMA,
        orient="row",
    )
    sources = {row[0] for row in db.execute("SELECT DISTINCT data_source FROM agents")}
    return RawTelemetry(snapshots, flows, incidents, "mixed" if len(sources) > 1 else next(iter(sources), "real"))


def simulated(settings: SimulatorConfig) -> RawTelemetry:
    """A labeled simulated fleet, for when the store holds nothing."""
    sim = simulate(settings.hosts, settings.duration_seconds, settings.seed, interval_s=settings.interval_seconds)
    snapshots = pl.from_arrow(sim.table).drop("label", "incident")
    incidents = pl.DataFrame(
        [(i.host, i.kind, i.start_ns, i.end_ns) for i in sim.incidents],
        schema=INCIDENT_SCHEMA,
        orient="row",
    )
    return RawTelemetry(snapshots, pl.DataFrame(schema=FLOW_SCHEMA), incidents, sim.data_source)
