"""The SNMP agent's collector: one canonical HostMetrics snapshot per reachable device per collect.

Devices are polled concurrently with pysnmp's asyncio API, SNMPv2c or SNMPv3 (SHA
authentication, AES-128 privacy when a privacy key is set). Each poll is one GET of
the scalars and one GETBULK walk per table (interfaces, disks, processors), each
request bounded by ``timeout_seconds`` and ``retries``. What is asked for and how it
maps onto the catalogue is in ``amoskys.agents.snmp_oids``.

A device that does not answer (or answers with an error) gets no snapshot in that
collect; the others are not held up. Its current error is in ``last_errors`` and one
line goes to stderr when a device's state changes ("snmp 10.0.0.7:161: timeout", then
"snmp 10.0.0.7:161: reachable again"). SNMPv2c has no error for a wrong community:
the agent stays silent, so that shows as a timeout.

``collect()`` is synchronous, for the agent runtime's loop: it runs the polls on an
event loop of its own, created on first use and closed by ``close()``; so it must not
be called from inside a running event loop.

The host id of a snapshot is, in order: ``host_ids[target]`` if given, the device's
sysName if it is a valid host id, else the target string itself. As on the host agent,
CPU and disk shares need two polls of a device, so its first snapshot has none.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, replace

from pyasn1.type import univ
from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA, USM_PRIV_CFB128_AES, CommunityData, ContextData, ObjectIdentity, ObjectType, SnmpEngine,
    Udp6TransportTarget, UdpTransportTarget, UsmUserData, bulk_cmd, get_cmd,
)  # fmt: skip
from pysnmp.proto import errind

from amoskys.agents import snmp_oids as oids
from amoskys.config import SnmpConfig
from amoskys.errors import ConfigError
from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics
from amoskys.telemetry.validate import host_id_ok

DEFAULT_PORT = 161
MAX_REPETITIONS = 10  # rows per GETBULK response and column
MAX_WALK_ROUNDS = 100  # so a table walk stops after at most 1000 rows, whatever the agent does
SCALARS_PER_GET = 24  # keeps each GET response well inside one UDP datagram
MIN_KEY_LENGTH = 8  # RFC 3414: USM passphrases are at least 8 characters

_HINTS = {
    errind.WrongDigest: "authentication failed (wrong v3 auth key?)",
    errind.UnknownUserName: "unknown v3 user",
    errind.UnsupportedSecurityLevel: "the v3 user does not allow this security level",
    errind.DecryptionError: "decryption failed (wrong v3 privacy key?)",
    errind.NotInTimeWindow: "v3 message outside the time window",
}


def parse_target(target: str) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT -> (host, port).

    >>> parse_target("10.0.0.7:1161"), parse_target("switch-3"), parse_target("[::1]:161")
    (('10.0.0.7', 1161), ('switch-3', 161), ('::1', 161))
    """
    host, port = target, str(DEFAULT_PORT)
    if target.startswith("["):
        host, bracket, rest = target[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port = rest[1:] if rest else port
    elif target.count(":") == 1:
        host, port = target.split(":")
    elif ":" in target:
        host = ""  # a bare IPv6 address: is the last part a port or not? Brackets say.
    if not host or any(c.isspace() for c in host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"snmp.targets: {target!r} is not HOST:PORT (e.g. 10.0.0.7:161 or [fe80::1]:161)")
    return host, int(port)


def check_settings(settings: SnmpConfig) -> None:
    """Raise ConfigError, naming the key, for settings no device could accept."""
    if settings.version not in ("2c", "3"):
        raise ConfigError(f'snmp.version must be "2c" or "3", not {settings.version!r}')
    if settings.version == "2c" and not settings.community:
        raise ConfigError("snmp.community must not be empty with version 2c")
    if settings.version == "3":
        if not settings.user:
            raise ConfigError("snmp.user must be set with version 3")
        if settings.priv_key and not settings.auth_key:
            raise ConfigError("snmp.priv_key needs snmp.auth_key: SNMPv3 has no privacy without authentication")
        for key in ("auth_key", "priv_key"):
            if 0 < len(getattr(settings, key)) < MIN_KEY_LENGTH:
                raise ConfigError(f"snmp.{key} must be at least {MIN_KEY_LENGTH} characters (RFC 3414)")
    if settings.timeout_seconds <= 0 or settings.retries < 0:
        raise ConfigError("snmp.timeout_seconds must be positive and snmp.retries not negative")


def auth_data(settings: SnmpConfig) -> CommunityData | UsmUserData:
    if settings.version == "2c":
        return CommunityData(settings.community, mpModel=1)
    if settings.auth_key and settings.priv_key:
        return UsmUserData(settings.user, settings.auth_key, settings.priv_key,
                           authProtocol=USM_AUTH_HMAC96_SHA, privProtocol=USM_PRIV_CFB128_AES)  # fmt: skip
    if settings.auth_key:
        return UsmUserData(settings.user, settings.auth_key, authProtocol=USM_AUTH_HMAC96_SHA)
    return UsmUserData(settings.user)


class PollFailed(Exception):
    """A device gave no usable answer; the message is what ``last_errors`` shows."""


@dataclass
class _Previous:
    """What the next poll of a device needs to turn its counters into shares of the interval."""

    monotonic_s: float
    uptime_s: float | None
    cpu_ticks: dict[str, int] | None
    disks: oids.DiskSample


class SnmpCollector:
    """Collector of SNMP devices' canonical metrics (see the module docstring)."""

    name = "snmp"
    max_repetitions = MAX_REPETITIONS

    def __init__(
        self, targets: list[str], settings: SnmpConfig, host_ids: dict[str, str] | None = None, source_agent: str = ""
    ):
        check_settings(settings)
        self.source_agent = source_agent
        self.targets = list(dict.fromkeys(targets))
        self.addresses = {target: parse_target(target) for target in self.targets}
        self.settings = settings
        self._auth = auth_data(settings)
        self.host_ids = dict(host_ids or {})
        for target, host_id in self.host_ids.items():
            if target not in self.addresses or not host_id_ok(host_id):
                raise ConfigError(f"snmp host id {host_id!r} for {target!r}: not a target, or not a valid host id")
        self.last_errors: dict[str, str] = {}
        self._previous: dict[str, _Previous] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: SnmpEngine | None = None
        self._transports: dict[str, UdpTransportTarget | Udp6TransportTarget] = {}

    def collect(self) -> list[Event]:
        if not self.targets:
            return []
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        events = self._loop.run_until_complete(self._poll_all())
        return [event for event in events if event is not None]

    def close(self) -> None:
        if self._loop is None:
            return
        if self._engine is not None:
            self._engine.close_dispatcher()
        self._loop.run_until_complete(asyncio.sleep(0))  # let the closed sockets and cancelled timer finish
        self._loop.run_until_complete(self._loop.shutdown_default_executor())  # address lookups run there
        self._loop.close()
        self._loop, self._engine = None, None
        self._transports.clear()

    # -- polling -------------------------------------------------------------------

    async def _poll_all(self) -> list[Event | None]:
        if self._engine is None:
            self._engine = SnmpEngine()  # created inside the loop: its dispatcher binds to the running loop
        return await asyncio.gather(*(self._poll_and_report(target) for target in self.targets))

    async def _poll_and_report(self, target: str) -> Event | None:
        try:
            event = await self._poll(target)
        except PollFailed as exc:
            self._report(target, str(exc))
            return None
        except ValueError as exc:  # e.g. text where a counter should be
            self._report(target, f"unexpected answer: {exc}".splitlines()[0])
            return None
        except (PySnmpError, OSError) as exc:  # e.g. a name that does not resolve
            self._report(target, str(exc).split(" caused by ")[0].splitlines()[0] or type(exc).__name__)
            return None
        self._report(target, None)
        return event

    def _report(self, target: str, error: str | None) -> None:
        before = self.last_errors.get(target)
        if error is None and before is not None:
            del self.last_errors[target]
            print(f"snmp {target}: reachable again", file=sys.stderr)
        elif error is not None and error != before:
            self.last_errors[target] = error
            print(f"snmp {target}: {error}", file=sys.stderr)

    async def _poll(self, target: str) -> Event:
        transport = await self._transport(target)
        chunks = [oids.SCALARS[i : i + SCALARS_PER_GET] for i in range(0, len(oids.SCALARS), SCALARS_PER_GET)]
        values: dict[str, object] = {}
        for chunk in await _all(self._get(transport, chunk) for chunk in chunks):
            values.update(chunk)
        # Every scalar but sysName is a number; an agent sending text there gets it ignored.
        values = {oid: v for oid, v in values.items() if isinstance(v, int) or oid == oids.SYS_NAME}
        ts_ns, now_s = time.time_ns(), time.monotonic()
        have_ucd_memory = any(oid in values for oid in oids.MEMORY["total"])
        walks = [oids.INTERFACE_COLUMNS, oids.DISK_COLUMNS, oids.PROCESSOR_COLUMNS]
        if not have_ucd_memory:
            walks.append(oids.STORAGE_COLUMNS)
        tables = await _all(self._walk(transport, columns) for columns in walks)

        metrics = oids.direct_metrics(values)
        metrics.update(oids.memory_metrics(values))
        metrics.update(oids.interface_metrics(tables[0]))
        disks = oids.disk_sample(tables[1])
        metrics.update(disks.metrics)
        ticks = oids.cpu_ticks(values)
        metrics.update(oids.processor_metrics(tables[2], have_cpu_ticks=oids.CPU_RAW["user"] in values))
        if not have_ucd_memory:
            metrics.update(oids.storage_memory(tables[3]))
        metrics.update(self._interval_metrics(target, _Previous(now_s, metrics.get("uptime_seconds"), ticks, disks)))

        host_id = self.host_ids.get(target) or str(values.get(oids.SYS_NAME, ""))
        if not host_id_ok(host_id):
            host_id = target
        return Event(metrics=HostMetrics(host_id=host_id, ts_ns=ts_ns, source_agent=self.source_agent, metrics=metrics))

    def _interval_metrics(self, target: str, now: _Previous) -> dict[str, float]:
        """CPU and disk shares over the interval since this device's last poll."""
        before = self._previous.get(target)
        if before is not None and None not in (before.uptime_s, now.uptime_s) and now.uptime_s < before.uptime_s:
            before = None  # the device rebooted: its counters started again from zero
        metrics: dict[str, float] = {}
        shares = None
        if before is not None and before.cpu_ticks and now.cpu_ticks:
            shares = oids.cpu_shares(before.cpu_ticks, now.cpu_ticks)
        if before is not None:
            metrics.update(oids.disk_busy(before.disks, now.disks, now.monotonic_s - before.monotonic_s))
        if shares is not None:
            metrics.update(shares)
        # net-snmp refreshes its CPU counters every few seconds: when none moved, keep the
        # older ticks so that the next poll measures a real interval instead of none.
        keep_old_ticks = before is not None and before.cpu_ticks and now.cpu_ticks and shares is None
        self._previous[target] = replace(now, cpu_ticks=before.cpu_ticks) if keep_old_ticks else now
        return metrics

    async def _transport(self, target: str) -> UdpTransportTarget | Udp6TransportTarget:
        transport = self._transports.get(target)
        if transport is None:
            host, port = self.addresses[target]
            kind = Udp6TransportTarget if ":" in host else UdpTransportTarget
            transport = await kind.create((host, port), timeout=self.settings.timeout_seconds,
                                          retries=self.settings.retries)  # fmt: skip
            self._transports[target] = transport
        return transport

    async def _get(self, transport, oid_list) -> dict[str, object]:
        """OID -> plain value for those the device has (missing objects are left out)."""
        request = [ObjectType(ObjectIdentity(oid)) for oid in oid_list]
        answer = await get_cmd(self._engine, self._auth, transport, ContextData(), *request,
                               lookupMib=False)  # fmt: skip
        values = {}
        for name, value in _checked(answer):
            plain = _plain(value)
            if plain is not None:
                values[str(name)] = plain
        return values

    async def _walk(self, transport, columns: dict[str, str]) -> oids.Table:
        """Walk several columns of one table together with GETBULK, until each leaves its column."""
        table: oids.Table = {key: {} for key in columns}
        cursor = dict(columns)  # column key -> the last OID read in it
        for _ in range(MAX_WALK_ROUNDS):
            keys = list(cursor)
            if not keys:
                break
            request = [ObjectType(ObjectIdentity(cursor[key])) for key in keys]
            answer = await bulk_cmd(self._engine, self._auth, transport, ContextData(), 0,
                                    self.max_repetitions, *request, lookupMib=False)  # fmt: skip
            var_binds = _checked(answer)
            if not var_binds:
                break
            finished = set()
            # The response is row after row of one value per requested column, in request order.
            for i, (name, value) in enumerate(var_binds):
                key = keys[i % len(keys)]
                oid, prefix = str(name), columns[key] + "."
                if key in finished:
                    continue
                if not oid.startswith(prefix) or _oid_key(oid) <= _oid_key(cursor[key]) or _plain(value) is None:
                    finished.add(key)  # past the column's end, the MIB's end, or an agent going backwards
                    continue
                table[key][oid[len(prefix) :]] = _plain(value)
                cursor[key] = oid
            for key in finished:
                del cursor[key]
        return table


async def _all(requests) -> list:
    """The results of concurrent requests; the first failure is raised only once all are done,
    so that no request of a failed poll is left running into the next collect."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _checked(answer) -> list:
    error_indication, error_status, error_index, var_binds = answer
    if error_indication:
        if isinstance(error_indication, errind.RequestTimedOut):
            raise PollFailed("timeout")
        hint = next((text for kind, text in _HINTS.items() if isinstance(error_indication, kind)), None)
        raise PollFailed(hint or str(error_indication))
    if error_status:
        raise PollFailed(f"agent answered {error_status.prettyPrint()} (error index {int(error_index)})")
    return list(var_binds)


def _plain(value) -> int | str | None:
    """An SNMP value as a Python int or str; None for noSuchObject/noSuchInstance/endOfMibView."""
    if isinstance(value, univ.Null):  # the three exceptions above (pyasn1's Null is an OctetString)
        return None
    if isinstance(value, univ.Integer):  # Integer32, Counter32/64, Gauge32, TimeTicks, Unsigned32
        return int(value)
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    if isinstance(value, univ.OctetString):
        return value.asOctets().decode("utf-8", "replace")
    return None


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.split("."))
