"""What the SNMP collector asks a device for, and how the answers become canonical metrics.

Numeric OIDs only, so the collecting machine needs no MIB files. Values are converted
into catalogue units here, with the host agent's choices (``amoskys.agents.host``), so
that a machine polled over SNMP and the same machine running the host agent describe
themselves the same way. Where an object has a 64-bit twin, the twin is preferred.

Mapping, OID (object) -> canonical name: conversion

HOST-RESOURCES-MIB and SNMPv2-MIB
  1.3.6.1.2.1.25.1.1.0 (hrSystemUptime)     -> uptime_seconds: TimeTicks / 100; sysUpTime
                                               (1.3.6.1.2.1.1.3.0, the agent's uptime) without HR-MIB
  1.3.6.1.2.1.25.1.6.0 (hrSystemProcesses)  -> process_count
  1.3.6.1.2.1.25.3.3.1.1 (hrProcessorFrwID) -> cpu_count: number of rows
  1.3.6.1.2.1.1.5.0 (sysName)               -> the snapshot's host_id
UCD-SNMP-MIB (net-snmp), memory in kB
  .2021.4.20/.5 (memTotalRealX/memTotalReal) -> mem_total_bytes: * 1024
  .2021.4.21/.6 (memAvailRealX/memAvailReal) -> mem_free_bytes: * 1024 (MemFree on Linux)
  total, free, .2021.4.25/.14 (memBufferX), .2021.4.26/.15 (memCachedX)
                                             -> mem_used_bytes: (total - free - buffers - cached) * 1024
  .2021.4.27 (memSysAvail)                   -> mem_available_bytes: * 1024 (MemAvailable on Linux)
  .2021.4.18/.3 (memTotalSwapX/memTotalSwap) -> swap_total_bytes: * 1024
  .2021.4.19/.4 (memAvailSwapX/memAvailSwap) -> swap_used_bytes: (swap total - avail) * 1024
  .2021.10.1.5.{1,2,3} (laLoadInt)           -> load_avg_1m, _5m, _15m: / 100
  .2021.11.{50,51,52,53,54,56,61,64} (ssCpuRawUser, Nice, System, Idle, Wait, Interrupt, SoftIRQ, Steal)
                                             -> cpu_user/system/idle/iowait_pct: shares of the tick deltas
                                                between two polls; user = user + nice, system = system +
                                                interrupt + softIRQ, steal counts in the total only
  .2021.11.60 (ssRawContexts)                -> context_switches_total
  .2021.11.59 (ssRawInterrupts)              -> interrupts_total
  .2021.13.15.1.1.{5,6} (diskIOReads/Writes) -> disk_read_ops_total, disk_write_ops_total: sum of whole disks
  .2021.13.15.1.1.{12,13} (diskIONReadX/NWrittenX)
                                             -> disk_read_bytes_total, disk_write_bytes_total: sum likewise
  .2021.13.15.1.1.14 (diskIOBusyTime, us)    -> disk_busy_pct: busiest disk's busy-time delta / wall time
IF-MIB, summed over every interface but loopback
  1.3.6.1.2.1.31.1.1.1.6/.10 (ifHCIn/OutOctets) -> net_rx_bytes_total, net_tx_bytes_total
  1.3.6.1.2.1.31.1.1.1.7+.8+.9 (ifHCIn Ucast+Multicast+BroadcastPkts), .11+.12+.13 (Out)
                                             -> net_rx_packets_total, net_tx_packets_total (net-snmp's
                                                Ucast leaves multicast out, so all three are added)
  1.3.6.1.2.1.2.2.1.14/.20 (ifIn/OutErrors)  -> net_rx_errors_total, net_tx_errors_total
  1.3.6.1.2.1.2.2.1.13/.19 (ifIn/OutDiscards) -> net_rx_drops_total, net_tx_drops_total
TCP-MIB, as is
  1.3.6.1.2.1.6.{5,6,7,8,15} (tcpActiveOpens, PassiveOpens, AttemptFails, EstabResets, OutRsts)
                                             -> tcp_active_opens_total, tcp_passive_opens_total,
                                                tcp_attempt_fails_total, tcp_estab_resets_total, tcp_out_rsts_total
  1.3.6.1.2.1.6.17/.10, .18/.11 (tcpHCInSegs/tcpInSegs, tcpHCOutSegs/tcpOutSegs)
                                             -> tcp_in_segs_total, tcp_out_segs_total
  1.3.6.1.2.1.6.12 (tcpRetransSegs)          -> tcp_retrans_segs_total
  1.3.6.1.2.1.6.9 (tcpCurrEstab)             -> tcp_established_count (ESTABLISHED + CLOSE_WAIT)

(".2021..." is short for 1.3.6.1.4.1.2021..., scalars end in .0.) For devices without
UCD-SNMP-MIB (not net-snmp) two fallbacks: mem_total_bytes from the hrStorageRam row of
hrStorageTable (1.3.6.1.2.1.25.2.3.1, size * allocation units), and cpu_idle_pct as 100
minus the mean hrProcessorLoad (1.3.6.1.2.1.25.3.3.1.2), a one-minute average.

Loopback is ifName ``lo`` or ifType softwareLoopback, left out as by the host agent and
the catalogue. Whole disks are told by name, SNMP having no /sys/block: partitions
(sda1, nvme0n1p1, mmcblk0p1), loop, ram, zram, dm-* and md* are left out, so that each
byte is counted once.

Not collected, for want of a standard MIB object: per-core CPU shares (UCD-SNMP-MIB has
machine-wide tick counters only; hrProcessorLoad is a one-minute average), thread_count,
procs_running_count, procs_blocked_count, process_forks_total, and the optional
sensor_temperature_celsius. Left unmapped, for want of a catalogue name: filesystem usage
(hrStorage, dskTable), hrProcessorLoad (when UCD counters exist), memShared, swap I/O.

Counter32 objects (disk ops, interface errors and drops, contexts, interrupts, TCP
counters without an HC twin) wrap at 2**32. They are sent raw, as the catalogue asks;
a wrap looks like a counter reset to whatever derives rates downstream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KB = 1024
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
HR_SYSTEM_UPTIME = "1.3.6.1.2.1.25.1.1.0"

# Scalars that map one-to-one: OID -> canonical name. Where a 64-bit twin exists, it comes
# later in this dict and so wins when both answer (see ``direct_metrics``).
DIRECT = {
    "1.3.6.1.2.1.25.1.6.0": "process_count",
    "1.3.6.1.4.1.2021.11.60.0": "context_switches_total",
    "1.3.6.1.4.1.2021.11.59.0": "interrupts_total",
    "1.3.6.1.2.1.6.5.0": "tcp_active_opens_total",
    "1.3.6.1.2.1.6.6.0": "tcp_passive_opens_total",
    "1.3.6.1.2.1.6.7.0": "tcp_attempt_fails_total",
    "1.3.6.1.2.1.6.8.0": "tcp_estab_resets_total",
    "1.3.6.1.2.1.6.9.0": "tcp_established_count",
    "1.3.6.1.2.1.6.10.0": "tcp_in_segs_total",
    "1.3.6.1.2.1.6.11.0": "tcp_out_segs_total",
    "1.3.6.1.2.1.6.12.0": "tcp_retrans_segs_total",
    "1.3.6.1.2.1.6.15.0": "tcp_out_rsts_total",
    "1.3.6.1.2.1.6.17.0": "tcp_in_segs_total",  # tcpHCInSegs
    "1.3.6.1.2.1.6.18.0": "tcp_out_segs_total",  # tcpHCOutSegs
}
LOAD = {f"1.3.6.1.4.1.2021.10.1.5.{i}": f"load_avg_{span}" for i, span in ((1, "1m"), (2, "5m"), (3, "15m"))}

_MEM = "1.3.6.1.4.1.2021.4."
# UCD memory objects in kB: key -> (64-bit OID, 32-bit OID); memSysAvail has no 32-bit form.
MEMORY = {
    "total": (_MEM + "20.0", _MEM + "5.0"),
    "free": (_MEM + "21.0", _MEM + "6.0"),
    "buffers": (_MEM + "25.0", _MEM + "14.0"),
    "cached": (_MEM + "26.0", _MEM + "15.0"),
    "available": (_MEM + "27.0", None),
    "swap_total": (_MEM + "18.0", _MEM + "3.0"),
    "swap_free": (_MEM + "19.0", _MEM + "4.0"),
}

# ssCpuRaw* tick counters (Counter32). ssCpuRawKernel (.55) is left out: the MIB lets
# ssCpuRawSystem include it, and net-snmp on Linux answers 0 for it anyway.
CPU_RAW = {
    mode: f"1.3.6.1.4.1.2021.11.{n}.0"
    for mode, n in (("user", 50), ("nice", 51), ("system", 52), ("idle", 53), ("wait", 54), ("interrupt", 56),
                    ("softirq", 61), ("steal", 64))  # fmt: skip
}

SCALARS = (SYS_NAME, SYS_UPTIME, HR_SYSTEM_UPTIME, *DIRECT, *LOAD, *(o for pair in MEMORY.values() for o in pair if o),
           *CPU_RAW.values())  # fmt: skip

# Table columns walked with GETBULK; each table is walked as one group of columns.
IF_TABLE = "1.3.6.1.2.1.2.2.1."
IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1."
INTERFACE_COLUMNS = {
    "type": IF_TABLE + "3", "in_discards": IF_TABLE + "13", "in_errors": IF_TABLE + "14",
    "out_discards": IF_TABLE + "19", "out_errors": IF_TABLE + "20", "name": IF_X_TABLE + "1",
    "in_octets": IF_X_TABLE + "6", "in_ucast": IF_X_TABLE + "7", "in_mcast": IF_X_TABLE + "8",
    "in_bcast": IF_X_TABLE + "9", "out_octets": IF_X_TABLE + "10", "out_ucast": IF_X_TABLE + "11",
    "out_mcast": IF_X_TABLE + "12", "out_bcast": IF_X_TABLE + "13",
}  # fmt: skip
DISK_IO = "1.3.6.1.4.1.2021.13.15.1.1."
DISK_COLUMNS = {"device": DISK_IO + "2", "reads": DISK_IO + "5", "writes": DISK_IO + "6",
                "read_bytes": DISK_IO + "12", "write_bytes": DISK_IO + "13", "busy_us": DISK_IO + "14"}  # fmt: skip
PROCESSOR_COLUMNS = {"frw_id": "1.3.6.1.2.1.25.3.3.1.1", "load": "1.3.6.1.2.1.25.3.3.1.2"}
HR_STORAGE = "1.3.6.1.2.1.25.2.3.1."
STORAGE_COLUMNS = {"type": HR_STORAGE + "2", "units": HR_STORAGE + "4", "size": HR_STORAGE + "5"}
HR_STORAGE_RAM = "1.3.6.1.2.1.25.2.1.2"
SOFTWARE_LOOPBACK = 24  # IANAifType

_NOT_A_WHOLE_DISK = re.compile(
    r"(loop|ram|zram|dm-|md)\d*|(sd|hd|vd|xvd)[a-z]+\d+|(nvme\d+n\d+|mmcblk\d+)p\d+"
)

Table = dict[str, dict[str, object]]  # column key -> row index -> value


def rows(table: Table) -> list[dict[str, object]]:
    """The table as one dict per row (column key -> value), rows ordered by index."""
    indexes = sorted({i for column in table.values() for i in column}, key=lambda i: tuple(map(int, i.split("."))))
    return [{key: column[i] for key, column in table.items() if i in column} for i in indexes]


def is_whole_disk(name: str) -> bool:
    """
    >>> [is_whole_disk(n) for n in ("sda", "sda1", "nvme0n1", "nvme0n1p2", "loop3", "dm-0", "vda")]
    [True, False, True, False, False, False, True]
    """
    return bool(name) and not _NOT_A_WHOLE_DISK.fullmatch(name)


def direct_metrics(values: dict[str, object]) -> dict[str, float]:
    """Scalars that map one-to-one, uptime and load averages."""
    metrics = {name: float(values[oid]) for oid, name in DIRECT.items() if oid in values}
    metrics.update({name: float(values[oid]) / 100.0 for oid, name in LOAD.items() if oid in values})
    uptime = values.get(HR_SYSTEM_UPTIME, values.get(SYS_UPTIME))
    if uptime is not None:
        metrics["uptime_seconds"] = float(uptime) / 100.0
    return metrics


def memory_metrics(values: dict[str, object]) -> dict[str, float]:
    """mem_* and swap_* in bytes from UCD-SNMP-MIB's kB objects (64-bit ones preferred)."""
    kb = {}
    for key, (wide, narrow) in MEMORY.items():
        value = values.get(wide, values.get(narrow) if narrow else None)
        if value is not None:
            kb[key] = float(value)
    metrics = {}
    if "total" in kb:
        metrics["mem_total_bytes"] = kb["total"] * KB
        if {"free", "buffers", "cached"} <= kb.keys():
            metrics["mem_free_bytes"] = kb["free"] * KB
            metrics["mem_used_bytes"] = max(0.0, kb["total"] - kb["free"] - kb["buffers"] - kb["cached"]) * KB
    if "available" in kb:
        metrics["mem_available_bytes"] = kb["available"] * KB
    if "swap_total" in kb and "swap_free" in kb:
        metrics["swap_total_bytes"] = kb["swap_total"] * KB
        metrics["swap_used_bytes"] = max(0.0, kb["swap_total"] - kb["swap_free"]) * KB
    return metrics


def cpu_ticks(values: dict[str, object]) -> dict[str, int] | None:
    """The ssCpuRaw* counters, or None when the device has no UCD CPU counters.

    net-snmp answers all zeros until its first CPU refresh, a few seconds after it starts:
    that is no sample either (a delta from it would be the average since boot).
    """
    ticks = {mode: int(values[oid]) for mode, oid in CPU_RAW.items() if oid in values}
    return ticks if {"user", "system", "idle"} <= ticks.keys() and any(ticks.values()) else None


def cpu_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float] | None:
    """cpu_*_pct from two ssCpuRaw* samples; None when no tick passed in between.

    >>> before = dict(user=10, nice=0, system=5, idle=80, wait=5)
    >>> cpu_shares(before, dict(user=60, nice=10, system=25, idle=95, wait=10))
    {'cpu_user_pct': 60.0, 'cpu_system_pct': 20.0, 'cpu_idle_pct': 15.0, 'cpu_iowait_pct': 5.0}
    """
    d = {mode: _tick_delta(before[mode], after[mode]) for mode in after if mode in before}
    total = sum(d.values())
    if total <= 0:
        return None
    shares = {
        "user": d.get("user", 0) + d.get("nice", 0),
        "system": d.get("system", 0) + d.get("interrupt", 0) + d.get("softirq", 0),
        "idle": d.get("idle", 0),
        "iowait": d.get("wait", 0),
    }
    return {f"cpu_{mode}_pct": min(100.0, 100.0 * ticks / total) for mode, ticks in shares.items()}


def _tick_delta(before: int, after: int) -> int:
    """after - before for a Counter32 of ticks: a drop of more than half the range is a wrap
    (weeks of ticks on a big machine); a small drop (iowait can step back) counts as 0."""
    delta = after - before
    if delta < 0:
        delta = delta + 2**32 if -delta > 2**31 else 0
    return delta


def interface_metrics(table: Table) -> dict[str, float]:
    """net_* totals over every interface but loopback."""
    sums = {"net_rx_bytes_total": ("in_octets",), "net_tx_bytes_total": ("out_octets",),
            "net_rx_packets_total": ("in_ucast", "in_mcast", "in_bcast"),
            "net_tx_packets_total": ("out_ucast", "out_mcast", "out_bcast"),
            "net_rx_errors_total": ("in_errors",), "net_tx_errors_total": ("out_errors",),
            "net_rx_drops_total": ("in_discards",), "net_tx_drops_total": ("out_discards",)}  # fmt: skip
    interfaces = [
        row for row in rows(table)
        if str(row.get("name", "")) != "lo" and row.get("type") != SOFTWARE_LOOPBACK
    ]  # fmt: skip
    metrics = {}
    for name, keys in sums.items():
        present = [row[key] for row in interfaces for key in keys if key in row]
        if present:
            metrics[name] = float(sum(int(v) for v in present))
    return metrics


@dataclass(frozen=True)
class DiskSample:
    metrics: dict[str, float]  # the *_total counters
    busy_us: dict[str, int]  # whole disk name -> diskIOBusyTime


def disk_sample(table: Table) -> DiskSample:
    disks = [row for row in rows(table) if is_whole_disk(str(row.get("device", "")))]
    names = {"disk_read_ops_total": "reads", "disk_write_ops_total": "writes",
             "disk_read_bytes_total": "read_bytes", "disk_write_bytes_total": "write_bytes"}  # fmt: skip
    metrics = {}
    for name, key in names.items():
        present = [int(row[key]) for row in disks if key in row]
        if present:
            metrics[name] = float(sum(present))
    busy = {str(row["device"]): int(row["busy_us"]) for row in disks if "busy_us" in row}
    return DiskSample(metrics, busy)


def disk_busy(before: DiskSample, after: DiskSample, elapsed_s: float) -> dict[str, float]:
    """disk_busy_pct: the busiest disk's share of the interval with I/O in flight."""
    busy = [max(0, us - before.busy_us[name]) for name, us in after.busy_us.items() if name in before.busy_us]
    if elapsed_s <= 0 or not busy:
        return {}
    return {"disk_busy_pct": min(100.0, max(busy) / (elapsed_s * 1e4))}


def processor_metrics(table: Table, have_cpu_ticks: bool) -> dict[str, float]:
    """cpu_count from hrProcessorTable; cpu_idle_pct from hrProcessorLoad only as a fallback."""
    processors = rows(table)
    metrics = {"cpu_count": float(len(processors))} if processors else {}
    loads = [int(row["load"]) for row in processors if "load" in row]
    if loads and not have_cpu_ticks:
        metrics["cpu_idle_pct"] = min(100.0, max(0.0, 100.0 - sum(loads) / len(loads)))
    return metrics


def storage_memory(table: Table) -> dict[str, float]:
    """mem_total_bytes from hrStorageRam, for devices without UCD-SNMP-MIB."""
    for row in rows(table):
        if str(row.get("type")) == HR_STORAGE_RAM and "units" in row and "size" in row:
            return {"mem_total_bytes": float(int(row["size"]) * int(row["units"]))}
    return {}
