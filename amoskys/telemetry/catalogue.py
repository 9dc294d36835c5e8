"""The catalogue of canonical metric names, shared by every agent and the store.

Every metric has one name, one unit and one kind. Names are snake_case and end in a
suffix that says their unit (``_pct``, ``_bytes``, ``_seconds``, ``_count``) and, for
counters, ``_total``. Counters are stored as the raw monotonically increasing counter;
rates are derived downstream. Per-core CPU metrics use the template
``cpu_core{n}_<mode>_pct``.

>>> lookup("mem_used_bytes").unit
'bytes'
>>> lookup("cpu_core3_user_pct").name
'cpu_core{n}_user_pct'
>>> lookup("mem_used_kb") is None
True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

GAUGE = "gauge"
COUNTER = "counter"

# unit -> (lowest valid value, highest valid value, name suffixes allowed for it)
UNITS: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "percent": (0.0, 100.0, ("_pct",)),
    "bytes": (0.0, float("inf"), ("_bytes", "_bytes_total")),
    "seconds": (0.0, float("inf"), ("_seconds", "_seconds_total")),
    "count": (0.0, float("inf"), ("_count", "_total")),
    "load": (0.0, float("inf"), ("_1m", "_5m", "_15m")),
    "celsius": (-273.15, float("inf"), ("_celsius",)),
}


@dataclass(frozen=True)
class Metric:
    name: str  # for per-core metrics, the template with "{n}"
    unit: str
    kind: str
    description: str
    optional: bool = False  # only agents with such a sensor report it; most hosts never do

    @property
    def per_core(self) -> bool:
        return "{n}" in self.name


def _m(name: str, unit: str, kind: str, description: str, optional: bool = False) -> Metric:
    return Metric(name, unit, kind, description, optional)


_CPU_MODES = {
    "user": "time in user mode",
    "system": "time in kernel mode",
    "idle": "idle time",
    "iowait": "idle time with I/O outstanding",
}

METRICS: tuple[Metric, ...] = (
    _m("uptime_seconds", "seconds", GAUGE, "Seconds since the host booted."),
    _m("cpu_count", "count", GAUGE, "Logical CPU cores."),
    *(
        _m(f"cpu_{mode}_pct", "percent", GAUGE, f"Share of all cores' {what} over the last interval.")
        for mode, what in _CPU_MODES.items()
    ),
    *(
        _m(f"cpu_core{{n}}_{mode}_pct", "percent", GAUGE, f"Share of core n's {what} over the last interval.")
        for mode, what in _CPU_MODES.items()
    ),
    _m("mem_total_bytes", "bytes", GAUGE, "Physical memory installed."),
    _m("mem_used_bytes", "bytes", GAUGE, "Memory used by processes (total - free - buffers - cache)."),
    _m("mem_free_bytes", "bytes", GAUGE, "Memory not used for anything."),
    _m("mem_available_bytes", "bytes", GAUGE, "Memory available to new processes without swapping."),
    _m("swap_total_bytes", "bytes", GAUGE, "Swap space configured."),
    _m("swap_used_bytes", "bytes", GAUGE, "Swap space in use."),
    _m("disk_read_ops_total", "count", COUNTER, "Completed disk reads, all disks."),
    _m("disk_write_ops_total", "count", COUNTER, "Completed disk writes, all disks."),
    _m("disk_read_bytes_total", "bytes", COUNTER, "Bytes read from all disks."),
    _m("disk_write_bytes_total", "bytes", COUNTER, "Bytes written to all disks."),
    _m("disk_busy_pct", "percent", GAUGE, "Share of the last interval the busiest disk had I/O in flight."),
    _m("net_rx_bytes_total", "bytes", COUNTER, "Bytes received, all interfaces but loopback."),
    _m("net_tx_bytes_total", "bytes", COUNTER, "Bytes sent, all interfaces but loopback."),
    _m("net_rx_packets_total", "count", COUNTER, "Packets received."),
    _m("net_tx_packets_total", "count", COUNTER, "Packets sent."),
    _m("net_rx_errors_total", "count", COUNTER, "Receive errors."),
    _m("net_tx_errors_total", "count", COUNTER, "Transmit errors."),
    _m("net_rx_drops_total", "count", COUNTER, "Received packets dropped."),
    _m("net_tx_drops_total", "count", COUNTER, "Outgoing packets dropped."),
    _m("load_avg_1m", "load", GAUGE, "Run-queue length averaged over 1 minute."),
    _m("load_avg_5m", "load", GAUGE, "Run-queue length averaged over 5 minutes."),
    _m("load_avg_15m", "load", GAUGE, "Run-queue length averaged over 15 minutes."),
    _m("process_count", "count", GAUGE, "Processes that exist."),
    _m("thread_count", "count", GAUGE, "Threads that exist."),
    _m("procs_running_count", "count", GAUGE, "Processes runnable right now."),
    _m("procs_blocked_count", "count", GAUGE, "Processes blocked on I/O right now."),
    _m("process_forks_total", "count", COUNTER, "Processes and threads created since boot."),
    _m("context_switches_total", "count", COUNTER, "Context switches since boot."),
    _m("interrupts_total", "count", COUNTER, "Interrupts serviced since boot."),
    _m("tcp_active_opens_total", "count", COUNTER, "TCP connections this host opened (SYN sent)."),
    _m("tcp_passive_opens_total", "count", COUNTER, "TCP connections this host accepted."),
    _m("tcp_attempt_fails_total", "count", COUNTER, "TCP connection attempts that failed."),
    _m("tcp_estab_resets_total", "count", COUNTER, "Established TCP connections reset."),
    _m("tcp_out_rsts_total", "count", COUNTER, "TCP segments sent with the RST flag."),
    _m("tcp_in_segs_total", "count", COUNTER, "TCP segments received."),
    _m("tcp_out_segs_total", "count", COUNTER, "TCP segments sent."),
    _m("tcp_retrans_segs_total", "count", COUNTER, "TCP segments retransmitted."),
    _m("tcp_established_count", "count", GAUGE, "TCP connections now ESTABLISHED or CLOSE_WAIT."),
    _m("sensor_temperature_celsius", "celsius", GAUGE, "Temperature of an attached sensor (e.g. a cold-chain probe).",
       optional=True),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
HOST_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if not m.optional)  # what every host reports

_PER_CORE = re.compile(r"cpu_core(\d{1,4})_(\w+_pct)")


@lru_cache(maxsize=4096)
def lookup(name: str) -> Metric | None:
    """The catalogue entry for a concrete metric name, or None if it is not canonical."""
    metric = BY_NAME.get(name)
    if metric is not None and not metric.per_core:
        return metric
    match = _PER_CORE.fullmatch(name)
    if match:
        return BY_NAME.get(f"cpu_core{{n}}_{match.group(2)}")
    return None


def core_metric(n: int, mode: str) -> str:
    """The concrete name of core n's metric: ``core_metric(0, "user") == "cpu_core0_user_pct"``."""
    return f"cpu_core{n}_{mode}_pct"


def _unit_stem(name: str) -> str:
    """The name without its unit suffix: ``mem_used_kb`` -> ``mem_used``."""
    if name.endswith("_total"):
        name = name[: -len("_total")]
    return name.rsplit("_", 1)[0]


# Stems of metrics whose suffix is a physical unit, for "wrong unit" hints.
_CANONICAL_STEMS = {
    _unit_stem(m.name): m.name
    for m in METRICS
    if not m.per_core and m.unit in ("percent", "bytes", "seconds", "celsius")
}


@lru_cache(maxsize=4096)
def wrong_unit_hint(name: str) -> str | None:
    """If ``name`` looks like a canonical metric in another unit, the canonical name.

    >>> wrong_unit_hint("mem_used_kb")
    'mem_used_bytes'
    >>> wrong_unit_hint("cpu_user_ratio")
    'cpu_user_pct'
    >>> wrong_unit_hint("net_tx_kilobytes_total")
    'net_tx_bytes_total'
    >>> wrong_unit_hint("shoe_size") is None
    True
    """
    return _CANONICAL_STEMS.get(_unit_stem(name))


def value_in_range(metric: Metric, value: float) -> bool:
    """Whether value is a finite number inside the metric's unit range."""
    low, high, _ = UNITS[metric.unit]
    return math.isfinite(value) and low <= value <= high
