"""Stored batches from the bus to metric snapshots: one matrix of values per set of metric names.

The bus hands subscribers the signed payloads as stored (an ``EventBatch`` per
envelope). Only metric snapshots feed the detector; flows and process events are left
to the store. Values that are not numbers become NaN (missing), as the store's schema
checks would have rejected the snapshot anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amoskys.telemetry.telemetry_pb2 import EventBatch


@dataclass
class Snapshots:
    """Snapshots sharing one set of metric names, in arrival order."""

    names: tuple[str, ...]
    hosts: list[str]
    ts_ns: np.ndarray  # int64
    values: np.ndarray  # rows x names, float64


def snapshots_of(batches: list[EventBatch]) -> list[Snapshots]:
    """The metric snapshots of batches, grouped by their metric names (arrival order kept within a group)."""
    groups: dict[tuple[str, ...], tuple[list, list, list]] = {}
    for batch in batches:
        for event in batch.events:
            body = event.WhichOneof("body")
            if body == "frame":
                frame = event.frame
                rows, width = len(frame.host_ids), len(frame.names)
                if rows == 0 or len(frame.ts_ns) != rows or len(frame.values) != rows * width:
                    continue  # malformed: the store counted it rejected
                hosts, stamps, values = groups.setdefault(tuple(frame.names), ([], [], []))
                hosts.extend(frame.host_ids)
                stamps.append(np.asarray(frame.ts_ns, dtype=np.int64))
                values.append(np.asarray(frame.values, dtype=np.float64).reshape(rows, width))
            elif body == "metrics":
                record = event.metrics
                names = tuple(sorted(record.metrics))
                hosts, stamps, values = groups.setdefault(names, ([], [], []))
                hosts.append(record.host_id)
                stamps.append(np.array([record.ts_ns], dtype=np.int64))
                values.append(np.array([[record.metrics[n] for n in names]], dtype=np.float64))
    return [Snapshots(names, hosts, np.concatenate(stamps), np.vstack(values))
            for names, (hosts, stamps, values) in groups.items()]  # fmt: skip
