"""Stage 3, cross-feature: ratios and indices of canonical features of the same row.

Each feature combines values of one row (one host, one interval), so it needs no
history and a live detector computes it from the event alone. Every ratio goes through
``safe_ratio``: a zero denominator (no packets, no traffic, no processes) gives null,
never inf. Each feature is declared as a formula over columns by name, which gives the
batch its Polars expression and the live path its NumPy arrays (``cross_arrays``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from amoskys.config import PipelineConfig
from amoskys.pipeline.features import CROSS, Feature, FeatureDef, safe_ratio


def cross_defs(config: PipelineConfig) -> list[FeatureDef]:
    """Stage-3 definitions (none of them depends on the configuration)."""
    return [FeatureDef(Feature(name, CROSS, unit, description, inputs), formula(pl.col))
            for name, unit, description, formula, inputs in _SPECS]  # fmt: skip


def cross_arrays(column: Callable[[str], np.ndarray]) -> np.ndarray:
    """Stage 3 on arrays (a live micro-batch's rows): (definitions, rows), NaN where the frame's column is null.

    column gives a canonical metric's values by name (NaN where missing). The same formulas as
    ``cross_defs``, in the same IEEE arithmetic: the values are the batch's, bit for bit.
    """
    return np.stack([formula(column) for _, _, _, formula, _ in _SPECS])


def _specs() -> list[tuple]:
    """(name, unit, description, formula, inputs) per feature; formula(c) combines the columns c(name) gives:
    Polars expressions (c = ``pl.col``) or arrays."""
    def rx_tx(c):
        return c("net_rx_packets_per_s") + c("net_tx_packets_per_s")

    def opens(c):
        return c("tcp_active_opens_per_s") + c("tcp_passive_opens_per_s")

    def disk_bytes(c):
        return c("disk_read_bytes_per_s") + c("disk_write_bytes_per_s")

    return [
        ("cpu_busy_per_process", "percent/process", "CPU busy share per existing process: high when few "
         "processes burn the CPU (a miner), low when many share it.",
         lambda c: _ratio(c("cpu_busy_pct"), c("process_count")), ("cpu_busy_pct", "process_count")),
        ("cpu_busy_per_kilo_context_switches", "percent/(1000/s)", "CPU busy share per 1000 context "
         "switches a second: high for CPU-bound work that rarely yields.",
         lambda c: _ratio(c("cpu_busy_pct") * 1000.0, c("context_switches_per_s")),
         ("cpu_busy_pct", "context_switches_per_s")),
        ("mem_pressure_index", "ratio", "(Memory used + swap used) / physical memory: above 1 means more is in "
         "use than fits in RAM.",
         lambda c: _ratio(c("mem_used_bytes") + c("swap_used_bytes"), c("mem_total_bytes")),
         ("mem_used_bytes", "swap_used_bytes", "mem_total_bytes")),
        ("net_tx_rx_bytes_ratio", "ratio", "Bytes sent per byte received: well above its usual level when "
         "data leaves the host (exfiltration).",
         lambda c: _ratio(c("net_tx_bytes_per_s"), c("net_rx_bytes_per_s")),
         ("net_tx_bytes_per_s", "net_rx_bytes_per_s")),
        ("net_rx_bytes_per_packet", "bytes/packet", "Mean size of received packets: small under floods and "
         "scans.", lambda c: _ratio(c("net_rx_bytes_per_s"), c("net_rx_packets_per_s")),
         ("net_rx_bytes_per_s", "net_rx_packets_per_s")),
        ("net_tx_bytes_per_packet", "bytes/packet", "Mean size of sent packets: large for bulk uploads, small "
         "for probes.", lambda c: _ratio(c("net_tx_bytes_per_s"), c("net_tx_packets_per_s")),
         ("net_tx_bytes_per_s", "net_tx_packets_per_s")),
        ("net_error_rate", "ratio", "Receive and transmit errors per packet, both directions.",
         lambda c: _ratio(c("net_rx_errors_per_s") + c("net_tx_errors_per_s"), rx_tx(c)),
         ("net_rx_errors_per_s", "net_tx_errors_per_s", "net_rx_packets_per_s", "net_tx_packets_per_s")),
        ("net_drop_rate", "ratio", "Dropped packets per packet, both directions.",
         lambda c: _ratio(c("net_rx_drops_per_s") + c("net_tx_drops_per_s"), rx_tx(c)),
         ("net_rx_drops_per_s", "net_tx_drops_per_s", "net_rx_packets_per_s", "net_tx_packets_per_s")),
        ("disk_read_share", "ratio", "Share of disk bytes that were reads (0 = only writes, 1 = only reads); "
         "ransomware and log floods push it to writes.",
         lambda c: _ratio(c("disk_read_bytes_per_s"), disk_bytes(c)),
         ("disk_read_bytes_per_s", "disk_write_bytes_per_s")),
        ("cpu_iowait_share", "ratio", "Share of the non-idle CPU time spent waiting for I/O (iowait / busy).",
         lambda c: _ratio(c("cpu_iowait_pct"), c("cpu_busy_pct")), ("cpu_iowait_pct", "cpu_busy_pct")),
        ("processes_per_core", "processes/core", "Processes per logical core.",
         lambda c: _ratio(c("process_count"), c("cpu_count")), ("process_count", "cpu_count")),
        ("threads_per_process", "threads/process", "Threads per process.",
         lambda c: _ratio(c("thread_count"), c("process_count")), ("thread_count", "process_count")),
        ("load_per_core", "load/core", "One-minute load average per logical core: above 1 means a run queue.",
         lambda c: _ratio(c("load_avg_1m"), c("cpu_count")), ("load_avg_1m", "cpu_count")),
        ("tcp_opens_per_s", "1/s", "TCP connections opened a second, by this host or by peers (active + "
         "passive).", opens, ("tcp_active_opens_per_s", "tcp_passive_opens_per_s")),
        ("tcp_opens_per_established", "1/s/connection", "TCP connections opened a second per established "
         "connection: churn; high for scans and floods, low for long-lived sessions.",
         lambda c: _ratio(opens(c), c("tcp_established_count")),
         ("tcp_active_opens_per_s", "tcp_passive_opens_per_s", "tcp_established_count")),
        ("tcp_attempt_fail_share", "ratio", "Failed TCP connection attempts per connection this host opened: "
         "near 1 when it probes closed ports (a scan).",
         lambda c: _ratio(c("tcp_attempt_fails_per_s"), c("tcp_active_opens_per_s")),
         ("tcp_attempt_fails_per_s", "tcp_active_opens_per_s")),
    ]  # fmt: skip


_SPECS = _specs()  # (pure formulas: built once, not on every live micro-batch)


def _ratio(numerator, denominator):
    """``safe_ratio`` on expressions, and on arrays: NaN (a frame's null) where the denominator is 0."""
    if isinstance(denominator, pl.Expr):
        return safe_ratio(numerator, denominator)
    return np.divide(numerator, denominator, out=np.full(len(denominator), np.nan), where=denominator != 0)
