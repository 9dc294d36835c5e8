"""Stage 1 on the stream: raw snapshots in, canonical rows out, as soon as each bucket's snapshot arrives.

The batch stage (``pipeline.canonical``) and this one give the same rows for the same
snapshots: buckets of ``interval_s`` per host (the first snapshot of a bucket is the
bucket; later ones in it are merged away and counted), counters as per-second rates
since the previous observed bucket (wraps at 2**32 and 2**64, resets), gauges as they
are, NaN/inf as missing, a host's first bucket dropped (it has no rates yet), and
gaps of up to ``max_fill_s`` after the last observed bucket filled with its values
(emitted when the next snapshot arrives, as the batch stage sees them), longer gaps
left out. A snapshot older than its host's newest bucket is a clock jump backwards:
counted and skipped.

State per host is one bucket: the previous raw counters and the last canonical row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from amoskys.pipeline.canonical import COUNTERS, GAUGES, canonical_features
from amoskys.pipeline.jit import njit
from amoskys.telemetry import catalogue

NS = 1_000_000_000
NEVER = np.iinfo(np.int64).min
# Indices into the counts array the kernel keeps.
MERGED, OUT_OF_ORDER, FIRST_BUCKETS, FILLED, GAP_DROPPED = range(5)
COUNT_NAMES = ("merged", "out_of_order", "first_buckets", "filled_buckets", "gap_buckets_dropped")


@dataclass
class CanonicalRows:
    """Canonical rows of one push: host slot, bucket start (ns), values in ``StreamCanonical.names`` order."""

    slots: np.ndarray
    ts_ns: np.ndarray
    values: np.ndarray  # rows x columns; the last column is imputed_features


@dataclass
class StreamCanonical:
    """Per-host stage-1 state; ``push`` turns snapshots into the canonical rows they complete."""

    interval_s: float = 5.0
    max_fill_s: float = 60.0
    optional: tuple[str, ...] = ()  # optional sensor metrics the models were trained with
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(COUNT_NAMES), dtype=np.int64))

    def __post_init__(self):
        self.names = [f.name for f in canonical_features(self.optional)]  # ends with imputed_features
        self.raw_names = [m.name for m in GAUGES] + list(self.optional) + [m.name for m in COUNTERS]
        self._column = {name: i for i, name in enumerate(self.raw_names)}
        self._hosts = 0
        self._last_bucket = np.empty(0, dtype=np.int64)
        self._prev_counters = np.empty((0, len(COUNTERS)))
        self._last_row = np.empty((0, len(self.names) - 1))

    def reserve(self, hosts: int) -> None:
        """Room for host slots 0..hosts-1 (new slots start empty)."""
        if hosts <= len(self._last_bucket):
            return
        grow = max(hosts, 2 * len(self._last_bucket), 16) - len(self._last_bucket)
        self._last_bucket = np.concatenate([self._last_bucket, np.full(grow, NEVER, dtype=np.int64)])
        self._prev_counters = np.vstack([self._prev_counters, np.full((grow, len(COUNTERS)), np.nan)])
        self._last_row = np.vstack([self._last_row, np.full((grow, self._last_row.shape[1]), np.nan)])

    def raw_matrix(self, names: tuple[str, ...], values: np.ndarray) -> np.ndarray:
        """Snapshots (rows x names) as the kernel's raw columns, plus the least and most idle core's idle share."""
        out = np.full((len(values), len(self.raw_names) + 2), np.nan)
        cores = []
        for j, name in enumerate(names):
            if (i := self._column.get(name)) is not None:
                out[:, i] = values[:, j]
            elif (metric := catalogue.lookup(name)) is not None and metric.per_core and name.endswith("_idle_pct"):
                cores.append(values[:, j])
        out[~np.isfinite(out)] = np.nan
        if cores:
            idle = np.where(np.isfinite(np.stack(cores)), np.stack(cores), np.nan)
            with np.errstate(all="ignore"):  # an all-NaN row stays NaN
                out[:, -2], out[:, -1] = np.fmin.reduce(idle, axis=0), np.fmax.reduce(idle, axis=0)
        return out

    def push(self, slots: np.ndarray, ts_ns: np.ndarray, raw: np.ndarray) -> CanonicalRows:
        """The canonical rows completed by these snapshots (slots' rows in time order per host)."""
        self.reserve(int(slots.max(initial=-1)) + 1)
        step = int(round(self.interval_s * NS))
        fill = int(self.max_fill_s * NS) // step * step
        most = len(slots) * (1 + fill // step)
        out_slots, out_ts = np.empty(most, dtype=np.int64), np.empty(most, dtype=np.int64)
        out_values = np.empty((most, len(self.names)))
        n = _push(slots.astype(np.int64), ts_ns.astype(np.int64), raw, len(GAUGES) + len(self.optional),
                  len(GAUGES), _IDLE, step, fill, self._last_bucket, self._prev_counters, self._last_row,
                  out_slots, out_ts, out_values, self.counts)  # fmt: skip
        return CanonicalRows(out_slots[:n], out_ts[:n], out_values[:n])

    def state_bytes(self) -> int:
        """Bytes of state per host."""
        return 8 * (1 + self._prev_counters.shape[1] + self._last_row.shape[1])


_WRAP_32, _WRAP_64 = 2.0**32, 2.0**64
_IDLE = [m.name for m in GAUGES].index("cpu_idle_pct")


@njit
def _increase(value: float, previous: float) -> float:
    """A counter's increase since previous, as ``pipeline.canonical._rates`` computes it."""
    if value >= previous:  # False when either is NaN
        return value - previous
    if previous >= 0.75 * _WRAP_64:
        return _WRAP_64 - previous + value
    if 0.75 * _WRAP_32 <= previous <= _WRAP_32:
        return _WRAP_32 - previous + value
    return value  # a reset (or no previous value): counted from 0; NaN when value is


@njit
def _push(slots, ts_ns, raw, n_gauges, n_host_gauges, idle, step, fill, last_bucket, prev_counters, last_row,
          out_slots, out_ts, out_values, counts):  # fmt: skip
    n_counters = prev_counters.shape[1]
    n_values = last_row.shape[1]
    # Host metric columns (whose gaps count as imputed and are filled with 0): all but the optional gauges.
    optional = np.zeros(n_values, dtype=np.bool_)
    optional[n_host_gauges:n_gauges] = True
    row = np.empty(n_values)
    emitted = 0
    for i in range(len(slots)):
        h, bucket = slots[i], ts_ns[i] // step * step
        previous_bucket = last_bucket[h]
        if previous_bucket != NEVER and bucket <= previous_bucket:
            counts[MERGED if bucket == previous_bucket else OUT_OF_ORDER] += 1
            continue
        last_bucket[h] = bucket
        counters = raw[i, n_gauges:n_gauges + n_counters]
        if previous_bucket == NEVER:
            prev_counters[h, :] = counters
            counts[FIRST_BUCKETS] += 1
            continue
        # Buckets missed since the previous one: those within fill of it repeat the last row. Before a
        # host's first row (column 0, a host metric, is never missing in a row) there is nothing to repeat.
        for missing in range(previous_bucket + step, bucket, step):
            if np.isnan(last_row[h, 0]):
                break
            if missing - previous_bucket > fill:
                counts[GAP_DROPPED] += 1
                continue
            out_slots[emitted], out_ts[emitted] = h, missing
            out_values[emitted, :n_values] = last_row[h]
            out_values[emitted, n_values] = n_values - optional.sum()  # every host metric imputed
            counts[FILLED] += 1
            emitted += 1
        seconds = (bucket - previous_bucket) / NS
        row[:n_gauges] = raw[i, :n_gauges]
        for k in range(n_counters):
            row[n_gauges + k] = _increase(counters[k], prev_counters[h, k]) / seconds
        prev_counters[h, :] = counters
        base = n_gauges + n_counters
        least_idle, most_idle = raw[i, base], raw[i, base + 1]
        row[base] = 100.0 - raw[i, idle]
        row[base + 1] = 100.0 - least_idle
        row[base + 2] = (100.0 - least_idle) - (100.0 - most_idle)
        imputed = 0
        for j in range(n_values):
            if np.isnan(row[j]):
                if not optional[j]:
                    imputed += 1
                # forward fill; a host metric never seen yet is 0, an optional sensor stays missing
                row[j] = last_row[h, j] if not np.isnan(last_row[h, j]) or optional[j] else 0.0
        last_row[h, :] = row
        out_slots[emitted], out_ts[emitted] = h, bucket
        out_values[emitted, :n_values] = row
        out_values[emitted, n_values] = imputed
        emitted += 1
    return emitted
