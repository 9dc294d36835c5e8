"""The host agent's collector: this machine's canonical metrics, one snapshot per collect.

Every non-optional metric of the catalogue is read from /proc (see ``procfs``) or
psutil, in catalogue units. Choices worth knowing:

- **Percentages come from deltas** between two collects, so the *first* snapshot after
  start carries no ``cpu_*_pct``, ``cpu_core{n}_*_pct`` or ``disk_busy_pct`` (rather
  than a made-up value); the pipeline drops a host's first bucket anyway. Every later
  snapshot has them all.
- **CPU modes**: the kernel counts ten kinds of tick; the catalogue has four. ``user``
  includes ``nice`` (user mode at low priority), ``system`` includes ``irq`` and
  ``softirq`` (kernel mode), ``steal`` is in the total but no mode, and ``guest`` is
  already inside ``user``, so it is not counted twice. The four shares add up to 100
  minus steal.
- **Network counters exclude loopback** (``lo``), as the catalogue defines them: local
  traffic between processes is not traffic of the machine. Other virtual interfaces
  (bridges, veth) are counted; on a container host their traffic shows twice.
- **Disks**: whole physical disks only, not partitions, loop devices, RAM disks or
  device-mapper/md devices stacked on other disks, so each byte is counted once.
  ``disk_busy_pct`` is the busiest disk's share of the interval with I/O in flight.
- ``thread_count`` is the kernel's count of scheduling entities (/proc/loadavg),
  kernel threads included; ``process_forks_total`` is ``processes`` of /proc/stat
  (forks and thread creations since boot); ``tcp_established_count`` is ``CurrEstab``
  (ESTABLISHED plus CLOSE_WAIT).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from amoskys.agents import procfs
from amoskys.errors import InputError
from amoskys.telemetry.catalogue import core_metric
from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics

# /proc/net/snmp Tcp columns -> canonical names.
TCP_COUNTERS = {
    "ActiveOpens": "tcp_active_opens_total",
    "PassiveOpens": "tcp_passive_opens_total",
    "AttemptFails": "tcp_attempt_fails_total",
    "EstabResets": "tcp_estab_resets_total",
    "OutRsts": "tcp_out_rsts_total",
    "InSegs": "tcp_in_segs_total",
    "OutSegs": "tcp_out_segs_total",
    "RetransSegs": "tcp_retrans_segs_total",
    "CurrEstab": "tcp_established_count",
}
_F = {name: i for i, name in enumerate(procfs.CPU_FIELDS)}


@dataclass
class _Sample:
    """What the next collect needs to turn counters into shares of the interval."""

    monotonic_s: float
    stat: procfs.ProcStat
    disks: dict[str, procfs.DiskCounters]


class HostCollector:
    """Collector of this machine's canonical metrics (see the module docstring)."""

    name = "host"

    def __init__(self, host_id: str | None = None, source_agent: str = "", proc_root: Path = procfs.PROC):
        self.host_id = host_id or socket.gethostname()
        self.source_agent = source_agent
        self.proc_root = proc_root
        self._previous: _Sample | None = None

    def collect(self) -> list[Event]:
        ts_ns = time.time_ns()
        metrics = self.snapshot()
        return [Event(metrics=HostMetrics(host_id=self.host_id, ts_ns=ts_ns, source_agent=self.source_agent,
                                          metrics=metrics))]  # fmt: skip

    def snapshot(self) -> dict[str, float]:
        """The canonical metrics now, name -> value."""
        root = self.proc_root
        try:
            stat = procfs.read_stat(root)
            disks = procfs.read_diskstats(root)
            sample = _Sample(time.monotonic(), stat, disks)
            metrics = {"uptime_seconds": procfs.read_uptime(root), "cpu_count": float(os.cpu_count() or len(stat.cores))}  # fmt: skip
            metrics.update(_kernel_counters(stat))
            metrics.update(_load_and_threads(root))
            metrics.update(_memory())
            metrics.update(_disk_totals(disks))
            metrics.update(_network(root))
            tcp = procfs.read_snmp(root).get("Tcp", {})
        except FileNotFoundError as exc:
            raise InputError(f"host collector needs Linux /proc: cannot read {exc.filename}") from None
        metrics.update({name: float(tcp[column]) for column, name in TCP_COUNTERS.items() if column in tcp})
        if self._previous is not None:
            metrics.update(_cpu_shares(self._previous.stat, stat))
            metrics.update(_disk_busy(self._previous, sample))
        self._previous = sample
        return metrics

    def close(self) -> None:
        self._previous = None


def _kernel_counters(stat: procfs.ProcStat) -> dict[str, float]:
    c = stat.counters
    names = {"ctxt": "context_switches_total", "intr": "interrupts_total", "processes": "process_forks_total",
             "procs_running": "procs_running_count", "procs_blocked": "procs_blocked_count"}  # fmt: skip
    metrics = {name: float(c[key]) for key, name in names.items() if key in c}
    metrics["process_count"] = float(len(psutil.pids()))
    return metrics


def _load_and_threads(root: Path) -> dict[str, float]:
    one, five, fifteen, entities = procfs.read_loadavg(root)
    return {"load_avg_1m": one, "load_avg_5m": five, "load_avg_15m": fifteen, "thread_count": float(entities)}


def _memory() -> dict[str, float]:
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    # psutil's "used" on Linux is total - free - buffers - cache: the catalogue's definition.
    return {
        "mem_total_bytes": float(memory.total),
        "mem_used_bytes": float(memory.used),
        "mem_free_bytes": float(memory.free),
        "mem_available_bytes": float(memory.available),
        "swap_total_bytes": float(swap.total),
        "swap_used_bytes": float(swap.used),
    }


def _disk_totals(disks: dict[str, procfs.DiskCounters]) -> dict[str, float]:
    return {
        "disk_read_ops_total": float(sum(d.reads for d in disks.values())),
        "disk_write_ops_total": float(sum(d.writes for d in disks.values())),
        "disk_read_bytes_total": float(sum(d.read_bytes for d in disks.values())),
        "disk_write_bytes_total": float(sum(d.write_bytes for d in disks.values())),
    }


def _network(root: Path) -> dict[str, float]:
    net = procfs.read_net_dev(root)
    return {
        "net_rx_bytes_total": float(net.rx_bytes),
        "net_tx_bytes_total": float(net.tx_bytes),
        "net_rx_packets_total": float(net.rx_packets),
        "net_tx_packets_total": float(net.tx_packets),
        "net_rx_errors_total": float(net.rx_errors),
        "net_tx_errors_total": float(net.tx_errors),
        "net_rx_drops_total": float(net.rx_drops),
        "net_tx_drops_total": float(net.tx_drops),
    }


def cpu_mode_shares(before: tuple[int, ...], after: tuple[int, ...]) -> dict[str, float] | None:
    """Percent of the ticks between two /proc/stat cpu lines spent in each catalogue mode;
    None when no tick passed.

    >>> cpu_mode_shares((0,) * 10, (50, 10, 20, 15, 5, 0, 0, 0, 0, 0))
    {'user': 60.0, 'system': 20.0, 'idle': 15.0, 'iowait': 5.0}
    """
    # A core's iowait (and, on some kernels, idle) can step back a little: a delta is never negative.
    d = [max(0, a - b) for a, b in zip(after, before)]
    total = sum(d[: _F["steal"] + 1])  # guest and guest_nice are already inside user and nice
    if total <= 0:
        return None
    busy = {
        "user": d[_F["user"]] + d[_F["nice"]],
        "system": d[_F["system"]] + d[_F["irq"]] + d[_F["softirq"]],
        "idle": d[_F["idle"]],
        "iowait": d[_F["iowait"]],
    }
    return {mode: min(100.0, 100.0 * ticks / total) for mode, ticks in busy.items()}


def _cpu_shares(before: procfs.ProcStat, after: procfs.ProcStat) -> dict[str, float]:
    metrics = {}
    shares = cpu_mode_shares(before.cpu, after.cpu)
    if shares:
        metrics.update({f"cpu_{mode}_pct": value for mode, value in shares.items()})
    for core, ticks in after.cores.items():
        if core in before.cores:  # a core that just came online has no interval yet
            shares = cpu_mode_shares(before.cores[core], ticks)
            if shares:
                metrics.update({core_metric(core, mode): value for mode, value in shares.items()})
    return metrics


def _disk_busy(before: _Sample, after: _Sample) -> dict[str, float]:
    elapsed_ms = (after.monotonic_s - before.monotonic_s) * 1000.0
    busy = [max(0, d.busy_ms - before.disks[name].busy_ms) for name, d in after.disks.items() if name in before.disks]
    if elapsed_ms <= 0 or not busy:
        return {}
    return {"disk_busy_pct": min(100.0, 100.0 * max(busy) / elapsed_ms)}
