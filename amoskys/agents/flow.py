"""The flow agent's collector: this machine's network flows, from its socket tables.

A flow is a socket 5-tuple (protocol, local address and port, remote address and port)
seen during an interval. Each collect reports every flow alive now, stamped with the
end of the interval: its state, how long since it was first seen, and the bytes and
packets of this interval where the kernel counts them. A flow seen before and gone now
is reported once more with state ``CLOSED`` and zero counters. ``src`` is always this
host's end and ``dst`` the peer, so ``bytes_sent`` is what this host sent, whichever
side opened the connection.

Where the data comes from, and its limits:

- **TCP**: ``ss -H -t -i -n state connected`` (iproute2, which reads the kernel's
  ``tcp_info`` over netlink): 5-tuple, state, and per-socket counters. Bytes sent are
  ``bytes_sent`` (on the wire, retransmissions included; kernels before 4.19 lack it and
  ``bytes_acked`` is used), bytes received ``bytes_received``, packets ``segs_out`` and
  ``segs_in`` (pure ACKs included). TIME-WAIT sockets have no counters (0).
- Without a working ``ss`` it falls back to /proc/net/tcp and tcp6: flows and states
  only, every counter 0 (``counters_source`` says ``none``; the log says so once).
- **UDP**: /proc/net/udp and udp6, *connected* sockets only (a peer set with
  ``connect``). The kernel keeps no per-socket byte counters for UDP, so they are 0, and
  the peers of an unconnected socket (a DNS server's clients) are not visible here at
  all; that needs packet capture or conntrack accounting.
- Sampling: a connection that opens and closes between two collects is missed (the
  closing side's TIME-WAIT usually still shows it), and bytes moved after a flow's last
  sample are lost with the socket.
- The first collect only takes a baseline and returns no flows: its counters would
  include everything since each socket was opened. A flow first seen later was opened
  during the interval, so all its counters belong to that interval.
- Loopback flows (both ends 127.0.0.0/8 or ::1) are reported unless
  ``include_loopback`` is False: local proxies and tunnels matter to security, and the
  security packs already treat loopback destinations as allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amoskys.agents import procfs
from amoskys.telemetry.telemetry_pb2 import Event, FlowRecord

log = logging.getLogger("amoskys.agents")

SS_COMMAND = ("ss", "-H", "-t", "-i", "-n", "state", "connected")
SS_TIMEOUT_S = 5.0
_SS_STATES = {"ESTAB": "ESTABLISHED", "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "UNCONN": "CLOSE"}
_NO_FLOW_STATES = {procfs.LISTEN, 7}  # listening and closed sockets carry no flow

Key = tuple[str, str, int, str, int]  # protocol, local ip, local port, remote ip, remote port
Counters = tuple[int, int, int, int]  # bytes sent, bytes received, packets sent, packets received


@dataclass(frozen=True)
class Socket:
    key: Key
    state: str
    counters: Counters | None  # None: the kernel gives none for this socket


@dataclass
class _Seen:
    first_ns: int
    last_ns: int
    counters: Counters | None


def parse_ss(text: str) -> list[Socket]:
    """Sockets from ``ss -H -t -i -n`` output (a socket's info may be on its own indented line).

    >>> parse_ss("ESTAB 0 0 10.0.0.5:50000 [::ffff:1.2.3.4]:443\\n\\t bytes_sent:10 bytes_received:7 segs_out:3 segs_in:2")
    [Socket(key=('tcp', '10.0.0.5', 50000, '1.2.3.4', 443), state='ESTABLISHED', counters=(10, 7, 3, 2))]
    """
    records: list[list[str]] = []
    for line in text.splitlines():
        if line[:1].isspace():
            if records:
                records[-1].extend(line.split())
        elif line.strip():
            records.append(line.split())
    sockets = []
    for tokens in records:
        if len(tokens) < 5:
            continue
        state = _SS_STATES.get(tokens[0], tokens[0].replace("-", "_"))
        local, remote = _ss_address(tokens[3]), _ss_address(tokens[4])
        info = dict(t.split(":", 1) for t in tokens[5:] if ":" in t)
        sockets.append(Socket(("tcp", *local, *remote), state, _tcp_counters(info)))
    return sockets


def _ss_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host[1 : host.index("]")] if host.startswith("[") else host.split("%")[0]
    return procfs.normalize_ip(host), int(port) if port.isdigit() else 0


def _tcp_counters(info: dict[str, str]) -> Counters | None:
    if "segs_out" not in info and "segs_in" not in info:
        return None  # TIME-WAIT and request sockets have no tcp_info
    sent = info.get("bytes_sent", info.get("bytes_acked", "0"))
    return int(sent), int(info.get("bytes_received", 0)), int(info.get("segs_out", 0)), int(info.get("segs_in", 0))


def _went_down(now: Counters, before: Counters) -> bool:
    return any(n < b for n, b in zip(now, before))


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class FlowCollector:
    """Collector of this machine's flows (see the module docstring)."""

    name = "flow"

    def __init__(self, host_id: str | None = None, source_agent: str = "", use_ss: bool | None = None,
                 include_loopback: bool = True, proc_root: Path = procfs.PROC):  # fmt: skip
        self.host_id = host_id or socket.gethostname()
        self.source_agent = source_agent
        self.use_ss = use_ss  # None: use ss if it is installed and works
        self.include_loopback = include_loopback
        self.proc_root = proc_root
        self.counters_source = "unknown"  # "ss" or "none", known after the first collect
        self._seen: dict[Key, _Seen] | None = None

    def collect(self) -> list[Event]:
        now_ns = time.time_ns()
        sockets = self.tcp_sockets() + self.udp_sockets()
        previous, current = self._seen, {}
        events = []
        for sock in sockets:
            if sock.key in current or (not self.include_loopback and is_loopback(sock.key[3])):
                continue  # two sockets on one 5-tuple (a TIME-WAIT and its successor): the first one counts
            before = None if previous is None else previous.get(sock.key)
            seen = _Seen(now_ns if before is None else before.first_ns, now_ns, sock.counters)
            delta: Counters = (0, 0, 0, 0)
            if sock.counters is None:
                seen.counters = before.counters if before is not None else None
            elif before is None or before.counters is None or _went_down(sock.counters, before.counters):
                delta = sock.counters  # new during the interval (or a new socket on an old 5-tuple)
            else:
                delta = tuple(n - o for n, o in zip(sock.counters, before.counters))
            current[sock.key] = seen
            if previous is not None:
                events.append(self._record(sock.key, sock.state, delta, now_ns, now_ns - seen.first_ns))
        if previous is not None:
            for key, gone in previous.items():
                if key not in current:
                    events.append(self._record(key, "CLOSED", (0, 0, 0, 0), now_ns, gone.last_ns - gone.first_ns))
        self._seen = current
        return events

    def _record(self, key: Key, state: str, counters: Counters, ts_ns: int, duration_ns: int) -> Event:
        protocol, src_ip, src_port, dst_ip, dst_port = key
        sent, received, packets_sent, packets_received = counters
        return Event(flow=FlowRecord(
            host_id=self.host_id, ts_ns=ts_ns, source_agent=self.source_agent, src_ip=src_ip, src_port=src_port,
            dst_ip=dst_ip, dst_port=dst_port, protocol=protocol, bytes_sent=sent, bytes_received=received,
            packets_sent=packets_sent, packets_received=packets_received, duration_ns=duration_ns, state=state,
        ))  # fmt: skip

    def tcp_sockets(self) -> list[Socket]:
        if self.use_ss is not False:
            found = self._ss_sockets()
            if found is not None:
                self.counters_source = "ss"
                return found
            if self.use_ss is None:
                self.use_ss = False  # not installed or not working: do not fork a failing ss every interval
        if self.counters_source != "none":
            self.counters_source = "none"
            log.warning("flow agent: `ss` (iproute2) is not usable; TCP flows come from /proc/net/tcp "
                        "without byte or packet counters")  # fmt: skip
        return self._proc_sockets("tcp")

    def udp_sockets(self) -> list[Socket]:
        return [s for s in self._proc_sockets("udp") if s.key[4] != 0]  # connected sockets only

    def _ss_sockets(self) -> list[Socket] | None:
        if shutil.which(SS_COMMAND[0]) is None:
            return None
        try:
            done = subprocess.run(SS_COMMAND, capture_output=True, text=True, timeout=SS_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_ss(done.stdout) if done.returncode == 0 else None

    def _proc_sockets(self, protocol: str) -> list[Socket]:
        sockets = []
        for table in (protocol, protocol + "6"):
            for row in procfs.read_socket_table(table, self.proc_root):
                if protocol == "tcp" and row.state in _NO_FLOW_STATES:
                    continue
                key = (protocol, row.local_ip, row.local_port, row.remote_ip, row.remote_port)
                sockets.append(Socket(key, procfs.TCP_STATES.get(row.state, "UNKNOWN"), None))
        return sockets

    def close(self) -> None:
        self._seen = None
