"""Bounded per-host history: the last N canonical rows of each host, for the stream's windows.

A ``History`` keeps, per host slot, the newest ``rows`` rows of some columns (a ring
buffer) and their times. ``assemble`` lays out, for the hosts of a micro-batch, each
host's kept rows followed by its new rows, as host segments the feature kernels take
(``starts``, and ``emit_from``: the first new row of each host), column by column (a
kernel reads a column's rows as one contiguous array); ``append`` then keeps the new
rows. The memory per host is fixed: rows × (columns + 1) × 8 bytes.
"""

from __future__ import annotations

import numpy as np

from amoskys.pipeline.jit import njit


class History:
    def __init__(self, columns: list[str], rows: int):
        self.columns = list(columns)
        self.rows = rows
        self.ts = np.empty((0, rows), dtype=np.int64)
        self.values = np.empty((0, len(columns), rows))  # column by column: a column's kept rows are contiguous
        self.count = np.empty(0, dtype=np.int64)  # rows kept per host, at most `rows`
        self.head = np.empty(0, dtype=np.int64)  # where the next row of each host goes

    def reserve(self, hosts: int) -> None:
        if hosts <= len(self.count):
            return
        grow = max(hosts, 2 * len(self.count), 16) - len(self.count)
        self.ts = np.concatenate([self.ts, np.zeros((grow, self.rows), dtype=np.int64)])
        self.values = np.concatenate([self.values, np.full((grow, len(self.columns), self.rows), np.nan)])
        self.count = np.concatenate([self.count, np.zeros(grow, dtype=np.int64)])
        self.head = np.concatenate([self.head, np.zeros(grow, dtype=np.int64)])

    def bytes_per_host(self) -> int:
        return self.rows * (len(self.columns) + 1) * 8 + 16

    def assemble(self, hosts: np.ndarray, new_starts: np.ndarray, new_ts: np.ndarray, new_values: np.ndarray,
                 columns: int | None = None):  # fmt: skip
        """(ts, values, starts, emit_from): per host of hosts, its kept rows, then its new rows
        new_starts[i]:new_starts[i + 1] of new_ts / new_values (rows, columns in this history's order); values is
        (columns, rows), of the first ``columns`` columns only when given (the others are kept, not read)."""
        kept = self.count[hosts]
        starts = np.zeros(len(hosts) + 1, dtype=np.int64)
        np.cumsum(kept + np.diff(new_starts), out=starts[1:])
        ts = np.empty(starts[-1], dtype=np.int64)
        values = np.empty((len(self.columns) if columns is None else columns, starts[-1]))
        _assemble(hosts, kept, starts, new_starts, new_ts, new_values, self.ts, self.values, self.head, self.rows, ts,
                  values)  # fmt: skip
        return ts, values, starts, starts[:-1] + kept

    def append(self, hosts: np.ndarray, new_starts: np.ndarray, new_ts: np.ndarray, new_values: np.ndarray) -> None:
        _append(hosts, new_starts, new_ts, new_values, self.ts, self.values, self.head, self.count, self.rows)


@njit
def _assemble(hosts, kept, starts, new_starts, new_ts, new_values, ring_ts, ring_values, head, rows, ts, values):
    for i in range(len(hosts)):
        h, out, new = hosts[i], starts[i], new_starts[i + 1] - new_starts[i]
        # the kept rows, oldest first: the ring's slots from first to its end, then from its start (wrapped)
        first = (head[h] - kept[i]) % rows
        ahead = min(kept[i], rows - first)
        wrapped = kept[i] - ahead
        ts[out : out + ahead] = ring_ts[h, first : first + ahead]
        ts[out + ahead : out + kept[i]] = ring_ts[h, :wrapped]
        ts[out + kept[i] : out + kept[i] + new] = new_ts[new_starts[i] : new_starts[i + 1]]
        for c in range(values.shape[0]):
            column = ring_values[h, c]
            values[c, out : out + ahead] = column[first : first + ahead]
            values[c, out + ahead : out + kept[i]] = column[:wrapped]
            for r in range(new):
                values[c, out + kept[i] + r] = new_values[new_starts[i] + r, c]


@njit
def _append(hosts, new_starts, new_ts, new_values, ring_ts, ring_values, head, count, rows):
    for i in range(len(hosts)):
        h = hosts[i]
        for r in range(new_starts[i], new_starts[i + 1]):
            ring_ts[h, head[h]] = new_ts[r]
            ring_values[h, :, head[h]] = new_values[r]
            head[h] = (head[h] + 1) % rows
            count[h] = min(count[h] + 1, rows)
