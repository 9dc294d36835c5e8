"""What each incident kind does to a host's drivers during its window.

Each effect edits the rows of the window only, so the labels mark exactly the samples
whose metrics the incident moved (load averages, being exponential averages, still
decay for a while afterwards, as on a real host).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from amoskys.simulator.baseline import Drivers
from amoskys.simulator.hosts import HostProfile
from amoskys.simulator.metrics import MIN_CACHE_SHARE, MIN_FREE_SHARE

Effect = Callable[[Drivers, slice, HostProfile, np.random.Generator], None]

_MSS_BYTES = 1448
_FULL_FRAME_BYTES = 1514  # an MSS of payload plus TCP/IP and Ethernet headers
_SMALL_FRAME_BYTES = 60  # SYN, RST, pure ACK
_SEGMENTS_PER_ACK = 45  # receivers coalesce (GRO) and ack about every 64 KiB


def _length(window: slice) -> int:
    return window.stop - window.start


def _jitter(rng: np.random.Generator, window: slice, sigma: float = 0.1) -> np.ndarray:
    return np.exp(sigma * rng.standard_normal(_length(window)))


def _rise(window: slice, share: float) -> np.ndarray:
    """0 -> 1 over the first `share` of the window, then 1."""
    length = _length(window)
    return np.minimum(1.0, (np.arange(length) + 1.0) / max(1.0, share * length))


def crypto_miner(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """One mining thread per core pins every core in user mode; disk and network stay flat."""
    length, cores = _length(window), profile.cores
    # iowait is idle time with I/O pending, and the miner leaves almost no idle time.
    d.cpu_iowait_pct[window] *= 0.2
    level = rng.uniform(95.0, 99.5, size=cores) + np.clip(0.4 * rng.standard_normal((length, cores)), -1.5, 1.5)
    # The host's own work still wants its CPUs: it now queues behind the miner.
    d.procs_waiting[window] += d.cpu_busy_pct[window].sum(axis=1) / 100.0
    d.cpu_busy_pct[window] = np.maximum(d.cpu_busy_pct[window], level)
    d.cpu_user_share[window] = 0.985
    d.process_count[window] += 1.0
    d.thread_count[window] += cores
    d.rates["context_switches_total"][window] += cores * rng.uniform(100.0, 300.0)


def memory_leak(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """A process grows linearly: cache gives way, then available runs low and swap fills."""
    total = profile.mem_total_bytes
    headroom = total * (1.0 - MIN_FREE_SHARE - MIN_CACHE_SHARE) - d.mem_demand_bytes[window.start]
    # Memory runs out 60-75% of the way through; the rest of the leak goes to swap.
    leak = max(headroom, 0.1 * total) / rng.uniform(0.6, 0.75)
    d.mem_demand_bytes[window] += leak * _rise(window, 1.0)


def port_scan(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """A connect() scan: every probe is an active open, most fail, open ports are aborted with RST."""
    probes = rng.uniform(250.0, 700.0) * _jitter(rng, window)
    answered = probes * rng.uniform(0.85, 0.95)  # SYN-ACK or RST replies; the rest are filtered
    aborted = probes * rng.uniform(0.4, 0.7)
    r = d.rates
    r["tcp_active_opens_total"][window] += probes
    r["tcp_attempt_fails_total"][window] += probes * rng.uniform(0.85, 0.95)
    r["tcp_out_rsts_total"][window] += aborted
    r["net_tx_packets_total"][window] += probes + aborted
    r["net_tx_bytes_total"][window] += (probes + aborted) * _SMALL_FRAME_BYTES
    r["net_rx_packets_total"][window] += answered
    r["net_rx_bytes_total"][window] += answered * _SMALL_FRAME_BYTES


def data_exfiltration(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """A bulk upload of tens of MB/s; the only thing coming back is coalesced ACKs."""
    payload = rng.uniform(20e6, 80e6) * _jitter(rng, window)
    segments = payload / _MSS_BYTES
    acks = segments / _SEGMENTS_PER_ACK
    r = d.rates
    r["net_tx_bytes_total"][window] += segments * _FULL_FRAME_BYTES
    r["net_tx_packets_total"][window] += segments
    r["net_rx_packets_total"][window] += acks
    r["net_rx_bytes_total"][window] += acks * _SMALL_FRAME_BYTES
    r["tcp_active_opens_total"][window] += rng.uniform(0.05, 0.5)
    d.tcp_established[window] += rng.integers(1, 8)
    # Compressing and encrypting the stream costs a little CPU.
    d.cpu_busy_pct[window] += rng.uniform(1.0, 4.0)


def fork_storm(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """Runaway forking grows fast until the process limit; the kernel spends its time forking."""
    rise = _rise(window, 0.15)
    forks = rng.uniform(1500.0, 5000.0) * rise * _jitter(rng, window, 0.2)
    spawned = rng.uniform(600.0, 2500.0) * rise * _jitter(rng, window, 0.05)
    r = d.rates
    r["process_forks_total"][window] += forks
    r["context_switches_total"][window] += forks * rng.uniform(8.0, 15.0)
    d.process_count[window] += spawned
    d.thread_count[window] += spawned
    d.procs_waiting[window] += profile.cores * rng.uniform(3.0, 8.0) * rise
    d.cpu_busy_pct[window] += rng.uniform(30.0, 50.0) * rise[:, None]
    d.cpu_user_share[window] = np.minimum(d.cpu_user_share[window], 0.3)


def disk_thrash(d: Drivers, window: slice, profile: HostProfile, rng: np.random.Generator) -> None:
    """Random I/O beyond what the disks can serve: ops and bytes up tenfold, tasks stuck in iowait."""
    w = profile.workload
    ops = profile.disk_iops * rng.uniform(1.2, 1.8) * _jitter(rng, window)
    read_share = rng.uniform(0.3, 0.7)
    r = d.rates
    r["disk_read_ops_total"][window] += ops * read_share
    r["disk_write_ops_total"][window] += ops * (1.0 - read_share)
    r["disk_read_bytes_total"][window] += ops * read_share * w.disk_read_op_bytes * rng.uniform(0.8, 1.2)
    r["disk_write_bytes_total"][window] += ops * (1.0 - read_share) * w.disk_write_op_bytes * rng.uniform(0.8, 1.2)
    stalled = rng.uniform(15.0, 35.0) * np.exp(0.15 * rng.standard_normal((_length(window), profile.cores)))
    d.cpu_iowait_pct[window] += stalled


EFFECTS: dict[str, Effect] = {
    "crypto_miner": crypto_miner,
    "memory_leak": memory_leak,
    "port_scan": port_scan,
    "data_exfiltration": data_exfiltration,
    "fork_storm": fork_storm,
    "disk_thrash": disk_thrash,
}
