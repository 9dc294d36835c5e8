"""Readers of the Linux /proc and /sys files the host and flow agents use.

Each reader parses one file into plain numbers, with no state and no psutil, so the
collectors stay cheap (a few small reads per interval) and the parsing can be tested
on text. ``root`` lets tests point a reader at a copy of /proc.

>>> parse_stat("cpu  10 2 5 80 3 0 1 0 0 0\\ncpu0 10 2 5 80 3 0 1 0 0 0\\nctxt 99\\nprocesses 7\\n").counters
{'ctxt': 99, 'processes': 7}
>>> parse_hex_address("0100007F:1F90")
('127.0.0.1', 8080)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
SYS_BLOCK = Path("/sys/block")
SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's sector size

# Columns of a "cpu" line in /proc/stat, in order (clock ticks since boot).
CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")

# Socket states as /proc/net/tcp numbers them (include/net/tcp_states.h), named like psutil.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}  # fmt: skip
LISTEN = 10


@dataclass
class ProcStat:
    """/proc/stat: CPU tick counters (all cores, then per core) and the kernel's event counters."""

    cpu: tuple[int, ...] = ()  # CPU_FIELDS of all cores together
    cores: dict[int, tuple[int, ...]] = field(default_factory=dict)  # core number -> its CPU_FIELDS (online cores)
    counters: dict[str, int] = field(default_factory=dict)  # ctxt, intr (total), processes, procs_running, ...


def parse_stat(text: str) -> ProcStat:
    stat = ProcStat()
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "cpu":
            stat.cpu = _ticks(rest)
        elif key.startswith("cpu") and key[3:].isdigit():
            stat.cores[int(key[3:])] = _ticks(rest)
        elif key in ("ctxt", "processes", "procs_running", "procs_blocked", "btime"):
            stat.counters[key] = int(rest)
        elif key == "intr":
            stat.counters[key] = int(rest.split(None, 1)[0])  # the first number is the total
    return stat


def _ticks(rest: str) -> tuple[int, ...]:
    values = [int(v) for v in rest.split()]
    return tuple(values + [0] * (len(CPU_FIELDS) - len(values)))  # old kernels have fewer columns


def read_stat(root: Path = PROC) -> ProcStat:
    return parse_stat((root / "stat").read_text())


def parse_snmp(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp: {"Tcp": {"ActiveOpens": 12, ...}, "Udp": {...}, ...} from its header/value line pairs."""
    tables: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        name, _, names = header.partition(":")
        _, _, numbers = values.partition(":")
        tables[name] = dict(zip(names.split(), map(int, numbers.split())))
    return tables


def read_snmp(root: Path = PROC) -> dict[str, dict[str, int]]:
    return parse_snmp((root / "net" / "snmp").read_text())


def read_loadavg(root: Path = PROC) -> tuple[float, float, float, int]:
    """The 1, 5 and 15 minute load averages and the number of scheduling entities (threads) that exist."""
    one, five, fifteen, entities, _ = (root / "loadavg").read_text().split()
    return float(one), float(five), float(fifteen), int(entities.partition("/")[2])


def read_uptime(root: Path = PROC) -> float:
    return float((root / "uptime").read_text().split()[0])


@dataclass(frozen=True)
class NetTotals:
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_drops: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_drops: int = 0


def parse_net_dev(text: str, skip: frozenset[str] = frozenset({"lo"})) -> NetTotals:
    """/proc/net/dev summed over every interface but those in skip."""
    sums = [0] * 8
    for line in text.splitlines()[2:]:
        name, _, numbers = line.partition(":")
        if name.strip() in skip:
            continue
        v = [int(x) for x in numbers.split()]
        # receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
        for i, value in enumerate((v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])):
            sums[i] += value
    return NetTotals(*sums)


def read_net_dev(root: Path = PROC) -> NetTotals:
    return parse_net_dev((root / "net" / "dev").read_text())


@dataclass(frozen=True)
class DiskCounters:
    reads: int
    writes: int
    read_bytes: int
    write_bytes: int
    busy_ms: int  # time with I/O in flight


# Block devices that are not storage of their own: loop devices (their I/O reaches the disk
# holding the file too), RAM disks and compressed RAM.
_VIRTUAL_DISK_PREFIXES = ("loop", "ram", "zram")


def physical_disks(sys_block: Path = SYS_BLOCK) -> set[str]:
    """Whole disks that are storage: not partitions, not virtual, and not stacked on other disks
    (device-mapper, md RAID), so that each byte of I/O is counted once."""
    try:
        names = os.listdir(sys_block)
    except OSError:
        return set()
    disks = set()
    for name in names:
        if name.startswith(_VIRTUAL_DISK_PREFIXES):
            continue
        try:
            if os.listdir(sys_block / name / "slaves"):
                continue
        except OSError:
            pass
        disks.add(name)
    return disks


def parse_diskstats(text: str, disks: set[str]) -> dict[str, DiskCounters]:
    counters = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 13 and f[2] in disks:
            counters[f[2]] = DiskCounters(int(f[3]), int(f[7]), int(f[5]) * SECTOR_BYTES, int(f[9]) * SECTOR_BYTES,
                                          int(f[12]))  # fmt: skip
    return counters


def read_diskstats(root: Path = PROC, sys_block: Path = SYS_BLOCK) -> dict[str, DiskCounters]:
    return parse_diskstats((root / "diskstats").read_text(), physical_disks(sys_block))


# -- socket tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class SocketRow:
    """One row of /proc/net/{tcp,tcp6,udp,udp6}."""

    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: int  # TCP_STATES number (UDP uses 1 for connected, 7 for unconnected)


def parse_hex_address(text: str) -> tuple[str, int]:
    """An address of /proc/net/tcp (hex, each 32-bit word in host byte order) as (ip, port).

    IPv4-mapped IPv6 addresses come out as plain IPv4, so one connection has one name.
    """
    address, _, port = text.partition(":")
    raw = bytes.fromhex(address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw), int(port, 16)
    return normalize_ip(socket.inet_ntop(socket.AF_INET6, raw)), int(port, 16)


def normalize_ip(ip: str) -> str:
    """IPv4-mapped IPv6 (``::ffff:10.0.0.1``) as IPv4; anything else unchanged."""
    if ip.startswith("::ffff:") and "." in ip:
        try:
            mapped = ipaddress.IPv6Address(ip).ipv4_mapped
        except ValueError:
            return ip
        return str(mapped) if mapped is not None else ip
    return ip


def parse_socket_table(text: str) -> list[SocketRow]:
    rows = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4:
            continue
        local, remote = parse_hex_address(f[1]), parse_hex_address(f[2])
        rows.append(SocketRow(local[0], local[1], remote[0], remote[1], int(f[3], 16)))
    return rows


def read_socket_table(kind: str, root: Path = PROC) -> list[SocketRow]:
    """The rows of /proc/net/<kind> (tcp, tcp6, udp, udp6); none if the table does not exist (IPv6 off)."""
    try:
        text = (root / "net" / kind).read_text()
    except FileNotFoundError:
        return []
    return parse_socket_table(text)
