"""The benign behaviour of one host over time, as arrays of the quantities that drive its metrics.

Everything follows the host's daily activity (a 24 h cosine with a per-host peak, so
even a 2 h run drifts) times a shared demand wobble (requests move CPU, network and
disk together), times each quantity's own smooth noise and a little jitter.
Incidents then edit these drivers (see ``effects``); ``metrics`` turns them into
catalogue values with consistent accounting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amoskys.simulator.hosts import HostProfile
from amoskys.simulator.signals import ar1, diurnal, wobble


@dataclass
class Drivers:
    """Per-sample causes of one host's metrics; arrays of length n, or (n, cores) per core."""

    cpu_busy_pct: np.ndarray  # (n, cores): share of each core neither idle nor in iowait
    cpu_user_share: np.ndarray  # (n, cores): part of busy time in user mode, the rest is system
    cpu_iowait_pct: np.ndarray  # (n, cores)
    mem_demand_bytes: np.ndarray  # memory processes want resident
    mem_cache_bytes: np.ndarray  # page cache and buffers the kernel keeps while memory allows
    swap_base_bytes: np.ndarray  # swap in use when memory is not under pressure
    rates: dict[str, np.ndarray]  # per-second rate of each counter metric not derived in ``metrics``
    process_count: np.ndarray
    thread_count: np.ndarray
    procs_waiting: np.ndarray  # runnable tasks queued behind those on a CPU
    tcp_established: np.ndarray


def baseline(profile: HostProfile, n: int, start_s: float, interval_s: float, rng: np.random.Generator) -> Drivers:
    w = profile.workload
    cores = profile.cores

    def noise(sigma: float, tau_s: float, jitter: float = 0.02, shape: tuple[int, ...] = ()) -> np.ndarray:
        return wobble(rng, n, interval_s, sigma, tau_s, jitter, shape)

    hour_of_day = ((start_s + interval_s * np.arange(n)) / 3600.0) % 24.0
    activity = diurnal(hour_of_day, profile.peak_hour, w.activity_floor)
    demand = activity * noise(0.08, 120.0, jitter=0.0)

    # Work is spread unevenly over cores (interrupt affinity, pinned threads).
    core_weight = rng.dirichlet(np.full(cores, 6.0)) * cores
    busy = w.cpu_busy_pct * demand[:, None] * core_weight * noise(0.15, 90.0, 0.05, (cores,))
    user_share = w.user_share + 0.03 * ar1(rng, n, interval_s, 300.0, (cores,))
    iowait = w.iowait_pct * (0.5 + 0.5 * demand)[:, None] * noise(0.3, 60.0, 0.1, (cores,))

    mem_total = profile.mem_total_bytes
    mem_demand = mem_total * w.mem_used_share * (0.9 + 0.1 * activity) * noise(0.01, 1800.0, 0.002)
    mem_cache = mem_total * rng.uniform(0.15, 0.3) * noise(0.02, 3600.0, 0.002)
    swap_base = profile.swap_total_bytes * rng.uniform(0.0, 0.05) * noise(0.02, 3600.0, 0.0)

    def load_driven(level: float) -> np.ndarray:
        return level * demand * noise(0.05, 60.0)

    rx_bytes = load_driven(w.net_rx_bytes)
    tx_bytes = load_driven(w.net_tx_bytes)
    read_ops = load_driven(w.disk_read_ops)
    write_ops = load_driven(w.disk_write_ops)
    passive = load_driven(w.passive_opens)
    active = load_driven(w.active_opens)
    busy_cores = busy.sum(axis=1) / 100.0
    rates = {
        "disk_read_ops_total": read_ops,
        "disk_write_ops_total": write_ops,
        "disk_read_bytes_total": read_ops * w.disk_read_op_bytes * noise(0.1, 60.0),
        "disk_write_bytes_total": write_ops * w.disk_write_op_bytes * noise(0.1, 60.0),
        "net_rx_bytes_total": rx_bytes,
        "net_tx_bytes_total": tx_bytes,
        "net_rx_packets_total": rx_bytes / w.rx_packet_bytes * noise(0.03, 60.0),
        "net_tx_packets_total": tx_bytes / w.tx_packet_bytes * noise(0.03, 60.0),
        # Errors are rare and steady; drops follow traffic bursts.
        "net_rx_errors_total": rng.uniform(1e-4, 2e-3) * noise(0.3, 600.0, 0.0),
        "net_tx_errors_total": rng.uniform(1e-4, 1e-3) * noise(0.3, 600.0, 0.0),
        "net_rx_drops_total": load_driven(rng.uniform(0.01, 0.1)),
        "net_tx_drops_total": load_driven(rng.uniform(0.001, 0.01)),
        "process_forks_total": load_driven(w.forks),
        "context_switches_total": w.switches_per_busy_core * (0.1 * cores + busy_cores) * noise(0.05, 60.0),
        "tcp_active_opens_total": active,
        "tcp_passive_opens_total": passive,
        # Failed connects (a peer restarting, a stale pool entry) are rare; the
        # host answers stray segments and aborted sessions with the odd RST.
        "tcp_attempt_fails_total": 0.01 * active + rng.uniform(0.05, 0.3) * noise(0.2, 300.0),
        "tcp_estab_resets_total": 0.005 * passive + rng.uniform(0.02, 0.1) * noise(0.2, 300.0),
        "tcp_out_rsts_total": 0.002 * (passive + active) + rng.uniform(0.1, 0.5) * noise(0.2, 300.0),
    }

    process_count = w.processes * (1.0 + 0.02 * ar1(rng, n, interval_s, 1800.0) + 0.05 * activity)
    thread_count = process_count * w.threads_per_process * (0.95 + 0.1 * activity) * noise(0.02, 600.0, 0.005)
    return Drivers(
        cpu_busy_pct=np.clip(busy, 0.2, 97.0),
        cpu_user_share=np.clip(user_share, 0.2, 0.97),
        cpu_iowait_pct=np.clip(iowait, 0.0, 30.0),
        mem_demand_bytes=mem_demand,
        mem_cache_bytes=mem_cache,
        swap_base_bytes=swap_base,
        rates=rates,
        process_count=process_count,
        thread_count=thread_count,
        procs_waiting=np.zeros(n),
        tcp_established=load_driven(w.tcp_established),
    )
