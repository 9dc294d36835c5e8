"""The host collector on this machine: catalogue names only, valid values, percentages from deltas."""

from __future__ import annotations

import os
import time

import pytest

from amoskys.agents import procfs
from amoskys.agents.host import HostCollector
from amoskys.store import Store
from amoskys.telemetry import catalogue, validate
from amoskys.telemetry.validate import DEFAULT_MAX_FUTURE_S

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the host collector reads Linux /proc")

PERCENT_MODES = ("user", "system", "idle", "iowait")


@pytest.fixture(scope="module")
def two_snapshots():
    """Two collects one second apart, with some CPU work in between."""
    collector = HostCollector(host_id="test-host", source_agent="host")
    first = collector.collect()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        sum(range(1000))
    second = collector.collect()
    collector.close()
    return first, second


def test_one_valid_snapshot_per_collect_with_catalogue_names_only(two_snapshots):
    for events in two_snapshots:
        assert len(events) == 1
        snapshot = events[0].metrics
        assert snapshot.host_id == "test-host" and snapshot.source_agent == "host"
        now = time.time_ns()
        assert validate.check_header(snapshot.host_id, snapshot.ts_ns, now, int(DEFAULT_MAX_FUTURE_S * 1e9)) is None
        problems = [validate.check_metric(name, value) for name, value in snapshot.metrics.items()]
        assert [p for p in problems if p is not None] == []
        assert not isinstance(validate.metric_set(tuple(sorted(snapshot.metrics))), validate.Problem)


def test_first_collect_has_no_percentages_the_second_has_them_all(two_snapshots):
    first, second = (events[0].metrics.metrics for events in two_snapshots)
    assert not [name for name in first if name.endswith("_pct")]
    cores = int(second["cpu_count"])
    for mode in PERCENT_MODES:
        assert 0.0 <= second[f"cpu_{mode}_pct"] <= 100.0
        for core in range(cores):  # every online core (all of them, on a test machine)
            assert 0.0 <= second[catalogue.core_metric(core, mode)] <= 100.0
    assert sum(second[f"cpu_{mode}_pct"] for mode in PERCENT_MODES) <= 100.0 + 1e-6
    assert second["cpu_idle_pct"] < 100.0  # we kept a core busy for a second
    assert 0.0 <= second["disk_busy_pct"] <= 100.0


def test_every_host_metric_of_the_catalogue_is_reported(two_snapshots):
    second = two_snapshots[1][0].metrics.metrics
    expected = {m.name for m in catalogue.HOST_METRICS if not m.per_core}
    assert expected - set(second) == set()
    assert all(catalogue.lookup(name) is not None and not catalogue.lookup(name).optional for name in second)


def test_counters_do_not_decrease_and_gauges_are_sane(two_snapshots):
    first, second = (events[0].metrics.metrics for events in two_snapshots)
    for name, value in first.items():
        if catalogue.lookup(name).kind == catalogue.COUNTER:
            assert second[name] >= value, name
    assert second["uptime_seconds"] > first["uptime_seconds"]
    assert second["mem_total_bytes"] >= second["mem_used_bytes"] > 0
    assert second["mem_total_bytes"] >= second["mem_available_bytes"]
    assert second["process_count"] >= 1 and second["thread_count"] >= second["process_count"]
    assert second["cpu_count"] == os.cpu_count()
    assert second["context_switches_total"] > first["context_switches_total"]


def test_the_store_takes_the_snapshots(two_snapshots, tmp_path):
    with Store.open(tmp_path / "store.db") as store:
        result = store.write([e for events in two_snapshots for e in events], agent="host")
        assert result.stored == 2, result.problems
        assert len(store.snapshots("test-host")) == 2


# -- /proc parsing, on text ---------------------------------------------------------------

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   77754     907    0    0    0     0          0         0    77754     907    0    0    0     0       0          0
  eth0: 1000      10    1    2    0     0          0         0  500   5    3    4    0     0       0          0
  eth1: 24      2    0    0    0     0          0         0  6   1    0    0    0     0       0          0
"""


def test_network_totals_skip_loopback():
    totals = procfs.parse_net_dev(NET_DEV)
    assert totals == procfs.NetTotals(rx_bytes=1024, rx_packets=12, rx_errors=1, rx_drops=2, tx_bytes=506,
                                      tx_packets=6, tx_errors=3, tx_drops=4)  # fmt: skip


def test_disk_counters_in_bytes_for_the_disks_asked_for():
    text = " 254 0 vda 10 0 80 5 20 0 160 9 0 30 14 0 0 0 0\n 254 1 vda1 10 0 80 5 20 0 160 9 0 30 14 0 0 0 0\n"
    assert procfs.parse_diskstats(text, {"vda"}) == {"vda": procfs.DiskCounters(10, 20, 80 * 512, 160 * 512, 30)}


def test_physical_disks_leave_out_virtual_and_stacked_devices(tmp_path):
    for name, slaves in {"sda": [], "loop0": [], "zram0": [], "dm-0": ["sda"], "nvme0n1": []}.items():
        (tmp_path / name / "slaves").mkdir(parents=True)
        for slave in slaves:
            (tmp_path / name / "slaves" / slave).touch()
    assert procfs.physical_disks(tmp_path) == {"sda", "nvme0n1"}


def test_snmp_tables_by_name():
    text = "Tcp: RtoAlgorithm ActiveOpens CurrEstab\nTcp: 1 103 4\nUdp: InDatagrams\nUdp: 7\n"
    assert procfs.parse_snmp(text) == {"Tcp": {"RtoAlgorithm": 1, "ActiveOpens": 103, "CurrEstab": 4},
                                       "Udp": {"InDatagrams": 7}}  # fmt: skip


def test_proc_socket_addresses_v4_v6_and_mapped():
    assert procfs.parse_hex_address("0100007F:0035") == ("127.0.0.1", 53)
    assert procfs.parse_hex_address("00000000000000000000000001000000:EBC9") == ("::1", 0xEBC9)
    assert procfs.parse_hex_address("0000000000000000FFFF00000100007F:99F5") == ("127.0.0.1", 0x99F5)
