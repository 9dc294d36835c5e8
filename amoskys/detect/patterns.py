"""Running ordinal-pattern counts per host: stage 5's permutation entropy, updated row by row.

The batch kernel (``windowed.permutation_entropy``) slides each window's pattern counts
over a host's rows. Run on a live detector's kept rows, it would recompute every
pattern of the window's 60 rows, for each new row. ``RunningPatterns`` keeps instead,
per host and series (a metric at a scale k), the counts of the patterns in the window
and the patterns themselves (a ring, to take each out as its row leaves the window);
and the last 3k − 1 values of each metric, from which a new row's pattern is formed.
Counts are whole numbers, and the pattern and entropy formulas are the batch's
(``windowed.ordinal_code``, ``windowed.entropy_of_counts``), so a row's entropy is the
batch's, bit for bit.

Memory per host: the window's rows (on the grid, plus one) × (a byte per series + its
time) and 3·max(k) − 1 rows of values and times: about 3 KiB for 8 metrics at 3 scales.
"""

from __future__ import annotations

import numpy as np

from amoskys.pipeline.jit import njit
from amoskys.pipeline.windowed import PATTERNS, entropy_of_counts, ordinal_code, x_log_x


class RunningPatterns:
    def __init__(self, metrics: int, scales: tuple[int, ...], window_ns: int, rows: int):
        """rows: the most rows a window holds (plus one, to be safe)."""
        self.metrics, self.window_ns, self.rows = metrics, window_ns, rows
        self.scales = np.asarray(scales, dtype=np.int64)
        self.series = metrics * len(scales)
        self.recent = 3 * int(self.scales.max()) - 1  # the values before a row that its patterns read
        self.recent_ts = np.empty((0, self.recent), dtype=np.int64)
        self.recent_x = np.empty((0, self.recent, metrics))
        self.recent_head = np.empty(0, dtype=np.int64)
        self.recent_count = np.empty(0, dtype=np.int64)
        self.ts = np.empty((0, rows), dtype=np.int64)  # the window's rows (a ring)
        self.codes = np.empty((0, rows, self.series), dtype=np.uint8)  # their patterns, ``PATTERNS`` for none
        self.head = np.empty(0, dtype=np.int64)
        self.inside = np.empty(0, dtype=np.int64)
        self.counts = np.empty((0, self.series, PATTERNS + 1), dtype=np.uint16)
        self._x_log_x = x_log_x(rows)

    def reserve(self, hosts: int) -> None:
        if hosts <= len(self.head):
            return
        grow = max(hosts, 2 * len(self.head), 16) - len(self.head)

        def more(array: np.ndarray) -> np.ndarray:
            return np.concatenate([array, np.zeros((grow, *array.shape[1:]), dtype=array.dtype)])

        self.recent_ts, self.recent_x, self.recent_head, self.recent_count = map(
            more, (self.recent_ts, self.recent_x, self.recent_head, self.recent_count))  # fmt: skip
        self.ts, self.codes, self.head, self.inside, self.counts = map(
            more, (self.ts, self.codes, self.head, self.inside, self.counts))  # fmt: skip

    def bytes_per_host(self) -> int:
        per_host = (self.recent_ts, self.recent_x, self.ts, self.codes, self.counts)
        return sum(a.itemsize * int(np.prod(a.shape[1:])) for a in per_host) + 4 * 8

    def push(self, hosts: np.ndarray, new_starts: np.ndarray, ts: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(series, new rows): the entropy of each new row, series m·len(scales) + j being metric m at scale
        scales[j] (``permutation_entropy``'s rows); the rows of host hosts[i] are new_starts[i]:new_starts[i + 1]
        of ts and x (rows, metrics), in time order. Keeps them."""
        out = np.empty((self.series, len(ts)))
        _push(hosts, new_starts, ts, np.ascontiguousarray(x, dtype=np.float64), self.scales, self.window_ns,
              self._x_log_x, self.recent_ts, self.recent_x, self.recent_head, self.recent_count, self.ts, self.codes,
              self.head, self.inside, self.counts, out)  # fmt: skip
        return out


@njit
def _push(hosts, new_starts, new_ts, new_x, scales, window_ns, x_log_x, recent_ts, recent_x, recent_head,
          recent_count, ring_ts, codes, head, inside, counts, out):  # fmt: skip
    rows, recent = ring_ts.shape[1], recent_ts.shape[1]
    for i in range(len(hosts)):
        h = hosts[i]
        for r in range(new_starts[i], new_starts[i + 1]):
            t = new_ts[r]
            # the rows at or before t − w leave the window, oldest first (a full ring: its oldest, to make room)
            while inside[h] > 0:
                oldest = (head[h] - inside[h]) % rows
                if ring_ts[h, oldest] > t - window_ns and inside[h] < rows:
                    break
                for c in range(codes.shape[2]):
                    counts[h, c, codes[h, oldest, c]] -= 1
                inside[h] -= 1
            slot = head[h]
            for j in range(len(scales)):
                k, reach = scales[j], 3 * scales[j] - 1  # reach: the oldest sample's rows back
                # formed: 3k samples, the oldest less than w before the new one
                formed = reach <= recent_count[h] and t - recent_ts[h, (recent_head[h] - reach) % recent] < window_ns
                for m in range(new_x.shape[1]):
                    c, code = m * len(scales) + j, PATTERNS
                    if formed:
                        earlier, at = recent_x[h, :, m], recent_head[h]
                        code = ordinal_code(_trailing_mean(new_x[r, m], earlier, at, 2 * k, k),
                                            _trailing_mean(new_x[r, m], earlier, at, k, k),
                                            _trailing_mean(new_x[r, m], earlier, at, 0, k), True)  # fmt: skip
                    codes[h, slot, c] = code
                    counts[h, c, code] += 1
                    out[c, r] = entropy_of_counts(counts[h, c], x_log_x)
            ring_ts[h, slot] = t
            head[h] = (slot + 1) % rows
            inside[h] += 1
            recent_ts[h, recent_head[h]] = t
            recent_x[h, recent_head[h]] = new_x[r]
            recent_head[h] = (recent_head[h] + 1) % recent
            recent_count[h] = min(recent_count[h] + 1, recent)


@njit
def _trailing_mean(newest, earlier, head, lag, k):
    """The mean of the k values ending lag rows before the new one (value newest; earlier: a ring of the rows
    before it, its next slot head), summed from the latest back, as the batch's ``_trailing_mean``."""
    total = newest if lag == 0 else earlier[(head - lag) % len(earlier)]
    for back in range(lag + 1, lag + k):
        total += earlier[(head - back) % len(earlier)]
    return total / k
