"""Turn one host's drivers into catalogue metrics with the accounting a kernel would keep.

Per-core CPU modes sum to 100 and the host totals are their mean; memory used, cache
and free add up to the total, with swap taking what memory cannot hold; counters
integrate their rates from a value reached over the host's uptime; load averages are
the kernel's exponential averages of the runnable and uninterruptible task count.
"""

from __future__ import annotations

import math

import numpy as np

from amoskys.simulator.baseline import Drivers
from amoskys.simulator.hosts import HostProfile
from amoskys.simulator.signals import exp_smooth

PAGE_BYTES = 4096
MIN_FREE_SHARE = 0.015  # free memory the kernel defends (its watermarks)
MIN_CACHE_SHARE = 0.03  # page cache that stays resident even under pressure
RECLAIMABLE_CACHE_SHARE = 0.85  # part of the cache the kernel can drop for new allocations
LOAD_WINDOWS_S = {"load_avg_1m": 60.0, "load_avg_5m": 300.0, "load_avg_15m": 900.0}

_TCP_SHARE = 0.95  # part of IP packets that are TCP segments
_PACKETS_PER_INTERRUPT = 8.0  # NAPI coalescing


def derive(
    profile: HostProfile, drivers: Drivers, interval_s: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(one array per host-level metric, one (n, cores) array per CPU mode for the per-core metrics)."""
    n = drivers.process_count.shape[0]
    per_core = cpu_modes(drivers)
    columns = {f"cpu_{mode}_pct": values.mean(axis=1) for mode, values in per_core.items()}
    columns["uptime_seconds"] = profile.uptime_s + interval_s * np.arange(n)
    columns["cpu_count"] = np.full(n, float(profile.cores))
    columns.update(memory(profile, drivers))

    rates = dict(drivers.rates)
    rates["tcp_in_segs_total"] = rates["net_rx_packets_total"] * _TCP_SHARE
    rates["tcp_out_segs_total"] = rates["net_tx_packets_total"] * _TCP_SHARE
    rates["tcp_retrans_segs_total"] = rates["tcp_out_segs_total"] * rng.uniform(0.0005, 0.003)
    disk_ops = rates["disk_read_ops_total"] + rates["disk_write_ops_total"]
    packets = rates["net_rx_packets_total"] + rates["net_tx_packets_total"]
    # Timer ticks on busy cores, NIC interrupts per polled batch, one per disk completion.
    timer = profile.cores * (100.0 + 150.0 * (1.0 - columns["cpu_idle_pct"] / 100.0))
    rates["interrupts_total"] = timer + packets / _PACKETS_PER_INTERRUPT + disk_ops
    columns.update(counters(profile, rates, interval_s, rng))

    # The busiest disk is in flight for a share that saturates as demand nears capacity.
    utilisation = np.maximum(
        disk_ops / profile.disk_iops,
        (rates["disk_read_bytes_total"] + rates["disk_write_bytes_total"]) / profile.disk_bytes_per_s,
    )
    jitter = np.exp(0.03 * rng.standard_normal(n))
    columns["disk_busy_pct"] = np.clip(100.0 * (1.0 - np.exp(-2.5 * utilisation)) * jitter, 0.0, 100.0)

    columns.update(tasks(per_core, drivers, columns["disk_busy_pct"], interval_s, rng))
    columns["mem_total_bytes"] = np.full(n, float(profile.mem_total_bytes))
    columns["swap_total_bytes"] = np.full(n, float(profile.swap_total_bytes))
    return columns, per_core


def cpu_modes(drivers: Drivers) -> dict[str, np.ndarray]:
    """Per-core percentages by mode, each row of a core summing to 100."""
    iowait = np.clip(drivers.cpu_iowait_pct, 0.0, 100.0)
    busy = np.clip(drivers.cpu_busy_pct, 0.0, 100.0 - iowait)
    user = busy * np.clip(drivers.cpu_user_share, 0.0, 1.0)
    system = busy - user
    idle = np.maximum(100.0 - (user + system + iowait), 0.0)
    return {"user": user, "system": system, "idle": idle, "iowait": iowait}


def memory(profile: HostProfile, drivers: Drivers) -> dict[str, np.ndarray]:
    """Cache gives way to process memory first, then what still does not fit goes to swap."""
    total = float(profile.mem_total_bytes)
    min_free = MIN_FREE_SHARE * total
    min_cache = MIN_CACHE_SHARE * total
    demand = drivers.mem_demand_bytes
    cache = np.clip(total - min_free - demand, min_cache, drivers.mem_cache_bytes)
    used = np.minimum(demand, total - min_free - cache)
    swap = np.minimum(drivers.swap_base_bytes + (demand - used), profile.swap_total_bytes)
    free = total - used - cache

    def pages(values: np.ndarray) -> np.ndarray:
        return np.floor(values / PAGE_BYTES) * PAGE_BYTES

    free_pages = pages(free)
    return {
        "mem_used_bytes": pages(used),
        "mem_free_bytes": free_pages,
        "mem_available_bytes": free_pages + pages(RECLAIMABLE_CACHE_SHARE * cache),
        "swap_used_bytes": pages(swap),
    }


def counters(
    profile: HostProfile, rates: dict[str, np.ndarray], interval_s: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Whole-number counters: a start value from the uptime, then the integral of the rate.

    The increment up to sample k is driven by the rate at k, so an incident's effect
    shows in exactly the rows it labels.
    """
    columns = {}
    for name, rate in rates.items():
        start = math.floor(float(np.median(rate)) * profile.uptime_s * rng.uniform(0.7, 1.3))
        columns[name] = start + np.floor(np.cumsum(np.maximum(rate, 0.0) * interval_s))
    return columns


def tasks(
    per_core: dict[str, np.ndarray],
    drivers: Drivers,
    disk_busy_pct: np.ndarray,
    interval_s: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Process table gauges and the load averages built from them."""
    process_count = np.round(drivers.process_count)
    # At the sampling instant each core runs a task with the probability it is busy; tasks
    # queued behind them arrive at random. The reader of /proc/stat is running too.
    busy_share = (per_core["user"] + per_core["system"]) / 100.0
    on_cpu = (rng.random(busy_share.shape) < busy_share).sum(axis=1)
    running = 1.0 + on_cpu + rng.poisson(drivers.procs_waiting)
    # Tasks wait uninterruptibly on I/O in numbers that grow steeply as the disk saturates.
    expected_blocked = 0.05 + 6.0 * (disk_busy_pct / 100.0) ** 3
    blocked = rng.poisson(expected_blocked).astype(np.float64)
    columns = {
        "process_count": process_count,
        "thread_count": np.maximum(np.round(drivers.thread_count), process_count + 1.0),
        "procs_running_count": running,
        "procs_blocked_count": blocked,
        "tcp_established_count": np.round(np.maximum(drivers.tcp_established, 0.0)),
    }
    # The kernel averages running + uninterruptible tasks at timer ticks, where the reader of
    # /proc/stat counted in procs_running is not running: load = decay * load + (1 - decay) * count,
    # from a steady state at the expected count (the host was up long before the run).
    runnable = running - 1.0 + blocked
    steady = busy_share[0].sum() + drivers.procs_waiting[0] + expected_blocked[0]
    for name, window_s in LOAD_WINDOWS_S.items():
        decay = math.exp(-interval_s / window_s)
        columns[name] = exp_smooth((1.0 - decay) * runnable, decay, steady)
    return columns
