"""Simulated hosts: hardware, workload role and daily rhythm, drawn from a seeded generator.

>>> host_names(3)
['sim-host-00', 'sim-host-01', 'sim-host-02']
>>> host_names(101)[-1]
'sim-host-100'
>>> import numpy as np
>>> profile = draw_profile("sim-host-00", np.random.default_rng(1))
>>> 2 <= profile.cores <= 16 and 4 * GIB <= profile.mem_total_bytes <= 64 * GIB
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Workload:
    """What a host does at the peak of its day; rates are per second."""

    cpu_busy_pct: float  # mean non-idle share of a core
    user_share: float  # part of busy time in user mode
    iowait_pct: float
    mem_used_share: float  # of physical memory, used by processes
    peak_hour: float  # hour of the day (UTC) when activity peaks
    activity_floor: float  # activity at the quietest hour, as a share of the peak
    disk_read_ops: float
    disk_write_ops: float
    disk_read_op_bytes: float
    disk_write_op_bytes: float
    net_rx_bytes: float
    net_tx_bytes: float
    rx_packet_bytes: float  # mean frame size
    tx_packet_bytes: float
    passive_opens: float
    active_opens: float
    processes: float
    threads_per_process: float
    tcp_established: float
    forks: float
    switches_per_busy_core: float


# Front ends serve many short connections; databases read and write the disk and hold
# memory; batch workers burn CPU at night and stream big files.
ROLES: dict[str, Workload] = {
    "web": Workload(
        cpu_busy_pct=35.0, user_share=0.70, iowait_pct=0.8, mem_used_share=0.35,
        peak_hour=14.0, activity_floor=0.35,
        disk_read_ops=15.0, disk_write_ops=40.0, disk_read_op_bytes=16 * 1024, disk_write_op_bytes=8 * 1024,
        net_rx_bytes=2.5 * MIB, net_tx_bytes=3.0 * MIB, rx_packet_bytes=600.0, tx_packet_bytes=1100.0,
        passive_opens=80.0, active_opens=12.0, processes=220.0, threads_per_process=3.5,
        tcp_established=400.0, forks=8.0, switches_per_busy_core=6000.0,
    ),
    "db": Workload(
        cpu_busy_pct=30.0, user_share=0.60, iowait_pct=4.0, mem_used_share=0.60,
        peak_hour=15.0, activity_floor=0.45,
        disk_read_ops=400.0, disk_write_ops=250.0, disk_read_op_bytes=16 * 1024, disk_write_op_bytes=16 * 1024,
        net_rx_bytes=4.0 * MIB, net_tx_bytes=3.0 * MIB, rx_packet_bytes=700.0, tx_packet_bytes=900.0,
        passive_opens=15.0, active_opens=1.0, processes=160.0, threads_per_process=6.0,
        tcp_established=150.0, forks=2.0, switches_per_busy_core=8000.0,
    ),
    "batch": Workload(
        cpu_busy_pct=60.0, user_share=0.85, iowait_pct=2.0, mem_used_share=0.45,
        peak_hour=2.0, activity_floor=0.40,
        disk_read_ops=120.0, disk_write_ops=80.0, disk_read_op_bytes=128 * 1024, disk_write_op_bytes=64 * 1024,
        net_rx_bytes=2.0 * MIB, net_tx_bytes=1.0 * MIB, rx_packet_bytes=1200.0, tx_packet_bytes=800.0,
        passive_opens=0.5, active_opens=4.0, processes=260.0, threads_per_process=2.5,
        tcp_established=40.0, forks=30.0, switches_per_busy_core=2500.0,
    ),
}

# Workload fields that grow with the size of the machine.
_THROUGHPUTS = (
    "disk_read_ops", "disk_write_ops", "net_rx_bytes", "net_tx_bytes",
    "passive_opens", "active_opens", "tcp_established", "forks",
)
_CORE_CHOICES = (2, 4, 6, 8, 12, 16)
_SWAP_CHOICES_GIB = (2, 4, 8)


@dataclass(frozen=True)
class HostProfile:
    name: str
    role: str
    workload: Workload  # the role's levels, varied and scaled for this host
    cores: int
    mem_total_bytes: int
    swap_total_bytes: int
    peak_hour: float
    uptime_s: int  # at the start of the run: the host has been up a while
    disk_iops: float  # operations per second that keep the busiest disk always busy
    disk_bytes_per_s: float  # throughput that does the same


def host_names(hosts: int) -> list[str]:
    """Zero-padded names, so sorting by name is sorting by number."""
    width = max(2, len(str(hosts - 1)))
    return [f"sim-host-{i:0{width}d}" for i in range(hosts)]


def draw_profile(name: str, rng: np.random.Generator) -> HostProfile:
    role = str(rng.choice(list(ROLES)))
    base = ROLES[role]
    cores = int(rng.choice(_CORE_CHOICES))
    # 1.5-4 GiB per core, rounded to a power of two as machines are bought.
    mem_gib = int(np.clip(2 ** round(np.log2(cores * rng.uniform(1.5, 4.0))), 4, 64))
    swap_gib = min(mem_gib, int(rng.choice(_SWAP_CHOICES_GIB)))
    size = (cores / 8) ** 0.5
    varied = {field: getattr(base, field) * size * rng.lognormal(0.0, 0.25) for field in _THROUGHPUTS}
    workload = dataclasses.replace(
        base,
        **varied,
        cpu_busy_pct=base.cpu_busy_pct * rng.lognormal(0.0, 0.15),
        iowait_pct=base.iowait_pct * rng.lognormal(0.0, 0.3),
        mem_used_share=base.mem_used_share * rng.uniform(0.85, 1.15),
        processes=base.processes * rng.uniform(0.8, 1.25),
    )
    ops = workload.disk_read_ops + workload.disk_write_ops
    op_bytes = (
        workload.disk_read_ops * workload.disk_read_op_bytes + workload.disk_write_ops * workload.disk_write_op_bytes
    )
    # Disks are sized so the peak workload keeps them 7-12% busy.
    return HostProfile(
        name=name,
        role=role,
        workload=workload,
        cores=cores,
        mem_total_bytes=mem_gib * GIB,
        swap_total_bytes=swap_gib * GIB,
        peak_hour=float((base.peak_hour + rng.normal(0.0, 2.0)) % 24.0),
        uptime_s=int(rng.integers(86_400, 120 * 86_400)),
        disk_iops=ops * rng.uniform(8.0, 14.0),
        disk_bytes_per_s=op_bytes * rng.uniform(8.0, 14.0),
    )
