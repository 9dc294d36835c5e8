"""Where a simulation goes: the store, or a Parquet file with an incidents file beside it.

Both say where the data came from: the store records the simulator as an agent whose
data source is ``simulated``; Parquet files carry ``data_source: simulated`` in their
metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amoskys.errors import InputError
from amoskys.simulator.generate import Simulation
from amoskys.store import IncidentRow, Store, WriteResult
from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame

SIMULATOR_AGENT = "simulator"
LABEL_COLUMNS = ("host", "ts_ns", "label", "incident")
ROWS_PER_FRAME = 2000


def to_store(sim: Simulation, store: Store, progress: Callable[[int], None] | None = None) -> WriteResult:
    """Write the simulation into the store; progress(n) after each n rows are committed."""
    total = WriteResult()
    pending = []
    for host_table in _per_host(sim.table):
        names = [c for c in host_table.column_names if c not in LABEL_COLUMNS and host_table[c].null_count == 0]
        for start in range(0, host_table.num_rows, ROWS_PER_FRAME):
            chunk = host_table.slice(start, ROWS_PER_FRAME)
            values = np.column_stack([chunk[n].to_numpy() for n in names])
            frame = MetricFrame(names=names, host_ids=chunk["host"].to_pylist(), ts_ns=chunk["ts_ns"].to_pylist(),
                                values=values.ravel().tolist())  # fmt: skip
            pending.append((chunk.num_rows, store.submit([Event(frame=frame)], agent=SIMULATOR_AGENT, data_source="simulated")))
    for rows, future in pending:
        total.add(future.result())
        if progress:
            progress(rows)
    store.write_incidents(
        IncidentRow(i.host, i.kind, i.start_ns, i.end_ns, source=SIMULATOR_AGENT) for i in sim.incidents
    )
    return total


def to_parquet(sim: Simulation, path: Path) -> Path:
    """Write the table to path (snappy) and the incidents to ``<stem>.incidents.parquet``; return the latter."""
    if path.suffix != ".parquet":
        raise InputError(f"--out must name a .parquet file, not {path}")
    metadata = {b"data_source": sim.data_source.encode(), b"amoskys_simulation": json.dumps(
        {"seed": sim.seed, "interval_s": sim.interval_s, "hosts": len(set(sim.table["host"].to_pylist()))}
    ).encode()}  # fmt: skip
    incidents = pa.table(
        {
            "host": [i.host for i in sim.incidents],
            "kind": [i.kind for i in sim.incidents],
            "start_ns": pa.array([i.start_ns for i in sim.incidents], type=pa.int64()),
            "end_ns": pa.array([i.end_ns for i in sim.incidents], type=pa.int64()),
        }
    )
    incidents_path = path.with_name(f"{path.stem}.incidents.parquet")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(sim.table.replace_schema_metadata(metadata), path, compression="snappy")
        pq.write_table(incidents.replace_schema_metadata(metadata), incidents_path, compression="snappy")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return incidents_path


def _per_host(table: pa.Table):
    for host in pc.unique(table["host"]).to_pylist():
        yield table.filter(pc.equal(table["host"], host))
