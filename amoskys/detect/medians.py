"""Running medians per host: the security pack's hour-long baselines, kept up to date row by row.

The security pack's baselines are medians of a metric over [t − span, t) of the host.
The batch kernel sorts a window as it slides; a live detector that rebuilt it from its
kept hour of rows would sort 720 values per host and micro-batch. ``RunningMedians``
keeps, per host, the window's values sorted, and for each new row removes the rows that
left the window, reads the median and inserts the new value: O(window) memory moves per
row, no sort. The values leave in arrival order, so each host also keeps the window's
rows (a ring of times and values). NaN values are left out, as in the batch kernel, so
a row's median is the batch's, bit for bit.

Memory per host: rows times and rows × metrics values (the ring), rows × metrics sorted
values, with rows the window's span on the grid plus one (721 on the 5 s grid for an
hour): about 29 KiB for two metrics.
"""

from __future__ import annotations

import numpy as np

from amoskys.pipeline.jit import njit
from amoskys.pipeline.packs._security_kernel import sorted_median, sorted_replace


class RunningMedians:
    def __init__(self, metrics: int, span_ns: int, rows: int):
        self.metrics, self.span_ns, self.rows = metrics, span_ns, rows  # rows: the most a window holds, plus one
        self.ts = np.empty((0, rows), dtype=np.int64)
        self.values = np.empty((0, rows, metrics))
        self.ordered = np.empty((0, metrics, rows))  # each metric's window, sorted
        self.sizes = np.empty((0, metrics), dtype=np.int64)  # values in each sorted window (NaN left out)
        self.inside = np.empty(0, dtype=np.int64)  # rows in the window: the newest of the ring's
        self.head = np.empty(0, dtype=np.int64)  # where the next row goes

    def reserve(self, hosts: int) -> None:
        if hosts <= len(self.head):
            return
        grow = max(hosts, 2 * len(self.head), 16) - len(self.head)
        self.ts = np.concatenate([self.ts, np.zeros((grow, self.rows), dtype=np.int64)])
        self.values = np.concatenate([self.values, np.zeros((grow, self.rows, self.metrics))])
        self.ordered = np.concatenate([self.ordered, np.zeros((grow, self.metrics, self.rows))])
        self.sizes = np.concatenate([self.sizes, np.zeros((grow, self.metrics), dtype=np.int64)])
        self.inside = np.concatenate([self.inside, np.zeros(grow, dtype=np.int64)])
        self.head = np.concatenate([self.head, np.zeros(grow, dtype=np.int64)])

    def bytes_per_host(self) -> int:
        return self.rows * (1 + 2 * self.metrics) * 8 + (self.metrics + 2) * 8

    def push(self, hosts: np.ndarray, new_starts: np.ndarray, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
        """(new rows, metrics): each new row's medians over its host's rows in [t − span, t), NaN with none; the
        rows of host hosts[i] are new_starts[i]:new_starts[i + 1] of ts / values, in time order. Keeps them."""
        out = np.empty((len(ts), self.metrics))
        _push(hosts, new_starts, ts, np.ascontiguousarray(values, dtype=np.float64), self.span_ns, self.ts, self.values,
              self.ordered, self.sizes, self.inside, self.head, out)  # fmt: skip
        return out


@njit
def _push(hosts, new_starts, new_ts, new_values, span_ns, ring_ts, ring_values, ordered, sizes, inside, head, out):
    rows, metrics = ring_ts.shape[1], new_values.shape[1]
    for i in range(len(hosts)):
        h = hosts[i]
        for r in range(new_starts[i], new_starts[i + 1]):
            # the rows older than the window leave it, oldest first (a full ring: its oldest, to make room)
            while inside[h] > 0:
                oldest = (head[h] - inside[h]) % rows
                if ring_ts[h, oldest] >= new_ts[r] - span_ns and inside[h] < rows:
                    break
                for m in range(metrics):
                    sizes[h, m] = sorted_replace(ordered[h, m], sizes[h, m], ring_values[h, oldest, m], np.nan)
                inside[h] -= 1
            for m in range(metrics):
                out[r, m] = sorted_median(ordered[h, m], sizes[h, m])
                sizes[h, m] = sorted_replace(ordered[h, m], sizes[h, m], np.nan, new_values[r, m])
            ring_ts[h, head[h]] = new_ts[r]
            ring_values[h, head[h]] = new_values[r]
            head[h] = (head[h] + 1) % rows
            inside[h] += 1
