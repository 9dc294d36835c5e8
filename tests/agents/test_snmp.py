"""The SNMP collector against a real snmpd on 127.0.0.1 (see ``snmpd.py``), with its
answers checked against net-snmp's own ``snmpget``/``snmpwalk`` for the same objects.

One daemon serves the whole module. The CPU test comes last: net-snmp answers zero CPU
ticks until its first refresh about 5 s after it starts, and refreshes every 5 s, so
by then the wait for two distinct samples is short.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from amoskys.agents.snmp import SnmpCollector
from amoskys.agents.snmp_oids import is_whole_disk
from amoskys.config import SnmpConfig
from amoskys.errors import ConfigError
from amoskys.store import Store
from amoskys.telemetry.validate import check_metric

from .snmpd import Snmpd, free_udp_port, installed, running_snmpd

TIMEOUT_S = 0.4
RETRIES = 2  # a reachable snmpd answering late on a loaded CI machine still counts
SLACK_S = 2.0  # scheduling on a busy 2-core CI machine; the bound itself is timeout * tries

TCP = {  # tcp-mib object -> canonical name
    "1.3.6.1.2.1.6.5.0": "tcp_active_opens_total",
    "1.3.6.1.2.1.6.6.0": "tcp_passive_opens_total",
    "1.3.6.1.2.1.6.7.0": "tcp_attempt_fails_total",
    "1.3.6.1.2.1.6.8.0": "tcp_estab_resets_total",
    "1.3.6.1.2.1.6.10.0": "tcp_in_segs_total",
    "1.3.6.1.2.1.6.11.0": "tcp_out_segs_total",
    "1.3.6.1.2.1.6.12.0": "tcp_retrans_segs_total",
    "1.3.6.1.2.1.6.15.0": "tcp_out_rsts_total",
}
ALWAYS = {
    "uptime_seconds", "cpu_count", "process_count", "mem_total_bytes", "mem_used_bytes", "mem_free_bytes",
    "mem_available_bytes", "swap_total_bytes", "swap_used_bytes", "load_avg_1m", "load_avg_5m", "load_avg_15m",
    "context_switches_total", "interrupts_total", "tcp_established_count", *TCP.values(),
}  # fmt: skip
NET = {f"net_{d}_{what}_total" for d in ("rx", "tx") for what in ("bytes", "packets", "errors", "drops")}
DISK = {f"disk_{d}_{what}_total" for d in ("read", "write") for what in ("ops", "bytes")}
CPU = {f"cpu_{mode}_pct" for mode in ("user", "system", "idle", "iowait")}


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory) -> Iterator[Snmpd]:
    missing = installed()
    if missing:
        pytest.skip(missing)
    with running_snmpd(tmp_path_factory.mktemp("snmpd")) as daemon:
        yield daemon


def v2c(daemon: Snmpd, **changes) -> SnmpConfig:
    return SnmpConfig(**(dict(community=daemon.community, timeout_seconds=TIMEOUT_S, retries=RETRIES) | changes))


def v3(daemon: Snmpd, **changes) -> SnmpConfig:
    keys = dict(user=daemon.user, auth_key=daemon.auth_key, priv_key=daemon.priv_key)
    return SnmpConfig(**(dict(version="3", timeout_seconds=TIMEOUT_S, retries=RETRIES) | keys | changes))


@contextmanager
def polling(targets: list[str], settings: SnmpConfig, **kwargs) -> Iterator[SnmpCollector]:
    collector = SnmpCollector(targets, settings, **kwargs)
    try:
        yield collector
    finally:
        collector.close()


def has_network_interface() -> bool:
    return any(p.name != "lo" for p in Path("/sys/class/net").iterdir())


def has_whole_disk() -> bool:
    return any(is_whole_disk(line.split()[2]) for line in Path("/proc/diskstats").read_text().splitlines())


def summed_column(daemon: Snmpd, column: str, name_column: str, keep) -> int:
    """snmpwalk's sum of a table column over the rows whose name (in name_column) passes keep."""
    names = {oid.rsplit(".", 1)[1]: name for oid, name in daemon.walk(name_column).items()}
    return sum(int(v) for oid, v in daemon.walk(column).items() if keep(names[oid.rsplit(".", 1)[1]]))


def non_loopback_sum(daemon: Snmpd, column: str) -> int:
    return summed_column(daemon, column, "1.3.6.1.2.1.31.1.1.1.1", lambda name: name != "lo")


def whole_disk_sum(daemon: Snmpd, column: str) -> int:
    return summed_column(daemon, column, "1.3.6.1.4.1.2021.13.15.1.1.2", is_whole_disk)


def test_v2c_poll_is_one_canonical_snapshot(snmpd):
    with polling([snmpd.target], v2c(snmpd)) as collector:
        events = collector.collect()
        assert collector.last_errors == {}
    assert len(events) == 1
    snapshot = events[0].metrics
    assert snapshot.host_id == snmpd.sys_name
    assert abs(snapshot.ts_ns - time.time_ns()) < 10e9
    assert {name: check_metric(name, value) for name, value in snapshot.metrics.items()} == {
        name: None for name in snapshot.metrics
    }
    expected = ALWAYS | (NET if has_network_interface() else set()) | (DISK if has_whole_disk() else set())
    assert expected <= set(snapshot.metrics), f"missing {sorted(expected - set(snapshot.metrics))}"
    assert not CPU & set(snapshot.metrics), "shares need two polls: the first snapshot has none"


@pytest.mark.parametrize("max_repetitions", [1, 10])  # 1: every table row takes one more GETBULK round
def test_values_agree_with_snmpget(snmpd, max_repetitions):
    reference = ["1.3.6.1.4.1.2021.4.5.0", "1.3.6.1.4.1.2021.4.3.0", "1.3.6.1.2.1.25.1.1.0", "1.3.6.1.2.1.25.1.6.0",
                 *(f"1.3.6.1.4.1.2021.10.1.3.{i}" for i in (1, 2, 3)), "1.3.6.1.2.1.6.9.0", *TCP]  # fmt: skip
    net = has_network_interface()
    disk = has_whole_disk()
    before = snmpd.get(*reference)
    rx_before = non_loopback_sum(snmpd, "1.3.6.1.2.1.31.1.1.1.6") if net else 0
    reads_before = whole_disk_sum(snmpd, "1.3.6.1.4.1.2021.13.15.1.1.5") if disk else 0
    with polling([snmpd.target], v2c(snmpd)) as collector:
        collector.max_repetitions = max_repetitions
        metrics = collector.collect()[0].metrics.metrics
    after = snmpd.get(*reference)

    assert metrics["mem_total_bytes"] == int(before["1.3.6.1.4.1.2021.4.5.0"]) * 1024  # kB -> bytes
    assert metrics["swap_total_bytes"] == int(before["1.3.6.1.4.1.2021.4.3.0"]) * 1024
    for oid, name in TCP.items():  # counters: between the readings taken before and after
        assert int(before[oid]) <= metrics[name] <= int(after[oid]), name
    assert abs(metrics["tcp_established_count"] - int(after["1.3.6.1.2.1.6.9.0"])) <= 20
    uptime = "1.3.6.1.2.1.25.1.1.0"  # hrSystemUptime, TimeTicks
    assert int(before[uptime]) / 100 <= metrics["uptime_seconds"] <= int(after[uptime]) / 100
    assert abs(metrics["process_count"] - int(after["1.3.6.1.2.1.25.1.6.0"])) <= 50
    for i, name in ((1, "load_avg_1m"), (2, "load_avg_5m"), (3, "load_avg_15m")):
        laload = f"1.3.6.1.4.1.2021.10.1.3.{i}"
        low, high = sorted((float(before[laload]), float(after[laload])))
        assert low - 0.5 <= metrics[name] <= high + 0.5, name
    assert metrics["cpu_count"] == len(snmpd.walk("1.3.6.1.2.1.25.3.3.1.1"))
    if net:
        assert rx_before <= metrics["net_rx_bytes_total"] <= non_loopback_sum(snmpd, "1.3.6.1.2.1.31.1.1.1.6")
    if disk:
        assert reads_before <= metrics["disk_read_ops_total"] <= whole_disk_sum(snmpd, "1.3.6.1.4.1.2021.13.15.1.1.5")


def test_v3_auth_priv_and_auth_only(snmpd):
    auth_only = v3(snmpd, user=snmpd.auth_only_user, priv_key="")
    for settings in (v3(snmpd), auth_only):
        with polling([snmpd.target], settings) as collector:
            events = collector.collect()
            assert collector.last_errors == {}
        assert [e.metrics.host_id for e in events] == [snmpd.sys_name]
        assert "mem_total_bytes" in events[0].metrics.metrics


@pytest.mark.parametrize("wrong", ["auth_key", "priv_key"])
def test_wrong_v3_key_is_reported_not_raised(snmpd, wrong, capsys):
    with polling([snmpd.target], v3(snmpd, **{wrong: "not-the-key-at-all"})) as collector:
        assert collector.collect() == []
        error = collector.last_errors[snmpd.target]
    # A wrong auth key gets a report back (wrong digest); a wrong privacy key gets silence
    # from net-snmp 5.9 (which drops what it cannot decrypt), a report from some agents.
    if wrong == "auth_key":
        assert error == "authentication failed (wrong v3 auth key?)"
    else:
        assert error in ("timeout", "decryption failed (wrong v3 privacy key?)")
    assert capsys.readouterr().err == f"snmp {snmpd.target}: {error}\n"


def test_wrong_community_is_a_timeout(snmpd):
    with polling([snmpd.target], v2c(snmpd, community="not-" + snmpd.community)) as collector:
        assert collector.collect() == []
        assert collector.last_errors == {snmpd.target: "timeout"}


def test_unreachable_target_does_not_hold_up_the_others(snmpd, capsys):
    closed = f"127.0.0.1:{free_udp_port()}"
    with polling([snmpd.target, closed], v2c(snmpd)) as collector:
        for poll in range(2):
            started = time.monotonic()
            events = collector.collect()
            elapsed = time.monotonic() - started
            assert collector.last_errors == {closed: "timeout"}, f"poll {poll}"
            assert [e.metrics.host_id for e in events] == [snmpd.sys_name]
            assert elapsed <= TIMEOUT_S * (RETRIES + 1) + SLACK_S, f"poll {poll}"
        assert capsys.readouterr().err == f"snmp {closed}: timeout\n"  # once: the state changed once


def test_a_device_coming_back_is_logged(snmpd, capsys):
    with polling([snmpd.target], v2c(snmpd)) as collector:
        with snmpd.paused():
            assert collector.collect() == []
        assert collector.last_errors == {snmpd.target: "timeout"}
        assert len(collector.collect()) == 1
        assert collector.last_errors == {}
    assert capsys.readouterr().err == f"snmp {snmpd.target}: timeout\nsnmp {snmpd.target}: reachable again\n"


def test_host_ids_override_sysname(snmpd):
    with polling([snmpd.target], v2c(snmpd), host_ids={snmpd.target: "core-switch-1"}) as collector:
        assert [e.metrics.host_id for e in collector.collect()] == ["core-switch-1"]


def test_snapshots_land_in_the_store_under_canonical_names(snmpd, tmp_path):
    with polling([snmpd.target], v2c(snmpd)) as collector:
        events = collector.collect()
        time.sleep(0.05)
        events += collector.collect()
    with Store.open(tmp_path / "amoskys.db") as store:
        result = store.write(events, agent="snmp")
        assert result.stored == 2
        snapshots = store.snapshots(snmpd.sys_name)
    assert [(s.agent, s.ts_ns, s.metrics) for s in snapshots] == [
        ("snmp", e.metrics.ts_ns, dict(e.metrics.metrics)) for e in events
    ]


@pytest.mark.parametrize("target", ["", "router:", ":161", "router:snmp", "router:70000", "fe80::1", "[::1", "a b:161"])
def test_malformed_target_is_a_config_error(target):
    with pytest.raises(ConfigError, match="snmp.targets"):
        SnmpCollector([target], SnmpConfig())


@pytest.mark.parametrize(
    "settings, key",
    [
        (SnmpConfig(version="1"), "snmp.version"),
        (SnmpConfig(community=""), "snmp.community"),
        (SnmpConfig(version="3"), "snmp.user"),
        (SnmpConfig(version="3", user="u", auth_key="short"), "snmp.auth_key"),
        (SnmpConfig(version="3", user="u", priv_key="privacy-only"), "snmp.priv_key"),
        (SnmpConfig(timeout_seconds=0.0), "snmp.timeout_seconds"),
    ],
)
def test_bad_settings_are_config_errors(settings, key):
    with pytest.raises(ConfigError, match=key):
        SnmpCollector(["127.0.0.1:161"], settings)


def test_host_id_for_an_unknown_target_is_a_config_error():
    with pytest.raises(ConfigError, match="not a target"):
        SnmpCollector(["127.0.0.1:161"], SnmpConfig(), host_ids={"10.0.0.1:161": "x"})


def test_no_targets_collects_nothing():
    collector = SnmpCollector([], SnmpConfig())
    assert collector.collect() == []
    collector.close()


def test_cpu_shares_from_two_polls(snmpd):
    deadline = time.monotonic() + 20.0  # net-snmp refreshes CPU ticks every 5 s
    steal_before = _proc_stat_cpu()
    with polling([snmpd.target], v2c(snmpd)) as collector:
        while True:
            metrics = collector.collect()[0].metrics.metrics
            if CPU <= set(metrics) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    steal_after = _proc_stat_cpu()
    assert CPU <= set(metrics), "no CPU shares after 20 s of polling"
    assert all(0.0 <= metrics[name] <= 100.0 for name in CPU)
    ticks = [b - a for a, b in zip(steal_before, steal_after)]
    steal_pct = 100.0 * ticks[7] / max(1, sum(ticks[:8]))
    # The four modes add up to 100 minus steal (in the total, in no mode), as on the host agent.
    assert 100.0 - steal_pct - 5.0 <= sum(metrics[name] for name in CPU) <= 100.0 + 1e-9
    if has_whole_disk():
        assert 0.0 <= metrics["disk_busy_pct"] <= 100.0


def _proc_stat_cpu() -> list[int]:
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
