"""Checks an event against the canonical schema before anything stores it.

Each check returns None when the event is fine, or a ``Problem``: the reason under
which the event is counted as rejected, and one line saying what is wrong. Ordering
checks (duplicates, out-of-order timestamps) need the store's state and live there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from amoskys.telemetry import catalogue
from amoskys.telemetry.telemetry_pb2 import FlowRecord, ProcessEvent

# How far ahead of the receiver's clock an event may be stamped (clock skew).
DEFAULT_MAX_FUTURE_S = 300.0

_PROTOCOLS = {"tcp", "udp", "icmp", "icmpv6", "sctp", "other"}


@dataclass(frozen=True)
class Problem:
    reason: str  # short snake_case key: unknown_metric, wrong_unit, bad_value, ...
    detail: str  # one line for a human


MAX_HOST_ID_LENGTH = 253  # a fully qualified domain name
SQLITE_MAX_INTEGER = 2**63 - 1


@lru_cache(maxsize=65536)
def host_id_ok(host_id: str) -> bool:
    """A host id is 1-253 printable characters (no control characters, so that every
    message naming it stays one line)."""
    return 0 < len(host_id) <= MAX_HOST_ID_LENGTH and host_id.isprintable()


def check_header(host_id: str, ts_ns: int, now_ns: int, max_future_ns: int) -> Problem | None:
    if not host_id:
        return Problem("missing_host", "event has no host_id")
    if not host_id_ok(host_id):
        return Problem("bad_host", f"host id {host_id[:80]!r} is not 1-{MAX_HOST_ID_LENGTH} printable characters")
    if ts_ns <= 0:
        return Problem("bad_timestamp", f"host {host_id}: timestamp {ts_ns} is not a time")
    if ts_ns > now_ns + max_future_ns:
        ahead = (ts_ns - now_ns) / 1e9
        return Problem("future_timestamp", f"host {host_id}: timestamp is {ahead:.0f}s in the future")
    return None


def check_metric(name: str, value: float) -> Problem | None:
    """Whether one metric sample is canonical: known name, value within its unit.

    >>> check_metric("mem_used_kb", 12.0).reason
    'wrong_unit'
    >>> check_metric("cpu_user_pct", 140.0).detail
    'cpu_user_pct=140.0 is outside the percent range 0..100'
    >>> check_metric("cpu_core7_idle_pct", 99.5) is None
    True
    """
    metric = catalogue.lookup(name)
    if metric is None:
        hint = catalogue.wrong_unit_hint(name)
        if hint is not None:
            unit = catalogue.BY_NAME[hint].unit
            return Problem("wrong_unit", f"metric {name!r} is not canonical: it is {hint!r}, in {unit}")
        return Problem("unknown_metric", f"metric {name!r} is not in the catalogue")
    if not catalogue.value_in_range(metric, value):
        low, high, _ = catalogue.UNITS[metric.unit]
        return Problem("bad_value", f"{name}={value} is outside the {metric.unit} range {low:g}..{high:g}")
    return None


class MetricSet:
    """A validated tuple of metric names and the value bounds of each.

    Agents send the same set of names snapshot after snapshot, so names are checked
    once per set, and values a whole matrix at a time.
    """

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        bounds = [catalogue.UNITS[catalogue.lookup(name).unit][:2] for name in names]
        self.low = np.array([low for low, _ in bounds], dtype=float)
        # sys.float_info.max rather than inf, so that inf is out of bounds
        self.high = np.array([min(high, sys.float_info.max) for _, high in bounds], dtype=float)

    def rows_in_range(self, values: np.ndarray) -> np.ndarray:
        """For a (rows, len(names)) matrix, whether each row's values are all valid."""
        return ((values >= self.low) & (values <= self.high)).all(axis=1)  # NaN compares False

    def row_problem(self, host_id: str, row: np.ndarray) -> Problem:
        """The problem of a row that ``rows_in_range`` refused."""
        index = int(np.flatnonzero(~((row >= self.low) & (row <= self.high)))[0])
        detail = check_metric(self.names[index], float(row[index])).detail
        return Problem("bad_value", f"host {host_id}: {detail}")


@lru_cache(maxsize=1024)
def metric_set(names: tuple[str, ...]) -> MetricSet | Problem:
    """The MetricSet for names, or the Problem with the first bad name."""
    if not names:
        return Problem("empty_snapshot", "snapshot has no metrics")
    if len(set(names)) != len(names):
        return Problem("repeated_metric", f"metric names repeat in {list(names)}")
    for name in names:
        if catalogue.lookup(name) is None:
            return check_metric(name, 0.0)
    return MetricSet(names)


def check_flow(event: FlowRecord) -> Problem | None:
    if event.protocol not in _PROTOCOLS:
        return Problem("bad_value", f"host {event.host_id}: flow protocol {event.protocol!r} is not one of {sorted(_PROTOCOLS)}")
    if event.src_port > 65535 or event.dst_port > 65535:
        return Problem("bad_value", f"host {event.host_id}: flow port above 65535")
    if not event.src_ip or not event.dst_ip:
        return Problem("bad_value", f"host {event.host_id}: flow without source or destination address")
    if max(event.bytes_sent, event.bytes_received, event.packets_sent, event.packets_received) > SQLITE_MAX_INTEGER:
        return Problem("bad_value", f"host {event.host_id}: flow counter above 2**63-1")
    if event.duration_ns < 0:
        return Problem("bad_value", f"host {event.host_id}: flow duration is negative")
    return None


def check_process(event: ProcessEvent) -> Problem | None:
    if event.kind not in (ProcessEvent.START, ProcessEvent.EXIT):
        return Problem("bad_value", f"host {event.host_id}: process event kind is unspecified")
    if event.pid <= 0:
        return Problem("bad_value", f"host {event.host_id}: process id {event.pid} is not a pid")
    return None
