"""The simulator's contract: schema, determinism, accounting invariants, incidents and labels."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from amoskys.simulator import DEFAULT_START_NS, INCIDENT_KINDS, Incident, Simulation, simulate
from amoskys.telemetry import catalogue

MODES = ("user", "system", "idle", "iowait")
HOUR_S = 3600.0
FLEET_SEEDS = (7, 8, 9)


def split_by_host(sim: Simulation) -> dict[str, dict[str, np.ndarray]]:
    """{host: {column: values}}; nulls become NaN."""
    hosts = np.asarray(sim.table["host"].to_pylist())
    columns = {}
    for name in sim.table.column_names:
        column = sim.table[name]
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            columns[name] = column.to_numpy()
        else:
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
    return {host: {name: values[hosts == host] for name, values in columns.items()} for host in dict.fromkeys(hosts)}


def rate(counter: np.ndarray, interval_s: float) -> np.ndarray:
    """Per-second rate over the interval ending at each sample (NaN for the first)."""
    return np.diff(counter, prepend=np.nan) / interval_s


def cores_of(host: dict[str, np.ndarray]) -> int:
    return int(host["cpu_count"][0])


@pytest.fixture(scope="module")
def fleets() -> list[tuple[Simulation, dict[str, dict[str, np.ndarray]]]]:
    """Several 6 x 2 h fleets, so every incident kind is checked on more than one host."""
    runs = [simulate(hosts=6, duration_s=2 * HOUR_S, seed=seed) for seed in FLEET_SEEDS]
    return [(sim, split_by_host(sim)) for sim in runs]


@pytest.fixture(scope="module")
def fleet(fleets: list) -> Simulation:
    return fleets[0][0]


@pytest.fixture(scope="module")
def fleet_hosts(fleets: list) -> dict[str, dict[str, np.ndarray]]:
    return fleets[0][1]


# ---- schema ------------------------------------------------------------------------


def test_columns_follow_the_catalogue_in_order(fleet: Simulation) -> None:
    max_cores = int(fleet.table["cpu_count"].to_numpy().max())
    expected = ["host", "ts_ns", "label", "incident"]
    for metric in catalogue.HOST_METRICS:
        if metric.per_core:
            mode = metric.name.removeprefix("cpu_core{n}_").removesuffix("_pct")
            expected += [catalogue.core_metric(n, mode) for n in range(max_cores)]
        else:
            expected.append(metric.name)
    assert fleet.table.column_names == expected
    schema = fleet.table.schema
    assert schema.field("host").type == pa.string()
    assert schema.field("ts_ns").type == pa.int64()
    assert schema.field("label").type == pa.int8()
    assert schema.field("incident").type == pa.string()
    assert all(schema.field(name).type == pa.float64() for name in expected[4:])
    assert all(catalogue.lookup(name) is not None for name in expected[4:])


def test_rows_are_sorted_by_host_then_time_on_a_regular_grid() -> None:
    sim = simulate(hosts=3, duration_s=60, seed=1, interval_s=2.5, start_ns=10**18)
    hosts = sim.table["host"].to_pylist()
    assert hosts == sorted(hosts)
    assert list(dict.fromkeys(hosts)) == ["sim-host-00", "sim-host-01", "sim-host-02"]
    ts = sim.table["ts_ns"].to_numpy().reshape(3, 24)
    assert (ts == 10**18 + 2_500_000_000 * np.arange(24)).all()
    assert sim.seed == 1 and sim.interval_s == 2.5 and sim.data_source == "simulated"


def test_default_start_is_new_year_2026() -> None:
    assert DEFAULT_START_NS == 1_767_225_600_000_000_000
    sim = simulate(hosts=1, duration_s=10, seed=0)
    assert sim.table["ts_ns"][0].as_py() == DEFAULT_START_NS


def test_a_single_sample_run_works() -> None:
    sim = simulate(hosts=2, duration_s=5, seed=3)
    assert sim.table.num_rows == 2 and sim.incidents == []


def test_progress_is_called_once_per_host() -> None:
    calls = []
    simulate(hosts=4, duration_s=60, seed=2, progress=calls.append)
    assert calls == [1, 1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hosts": 0, "duration_s": 60}, "hosts"),
        ({"hosts": -3, "duration_s": 60}, "hosts"),
        ({"hosts": 1, "duration_s": 4}, "duration_s"),
        ({"hosts": 1, "duration_s": 60, "interval_s": 0}, "interval_s"),
        ({"hosts": 1, "duration_s": 60, "interval_s": -5}, "interval_s"),
        ({"hosts": 1, "duration_s": 60, "interval_s": math.nan}, "interval_s"),
    ],
)
def test_bad_arguments_raise_a_one_line_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        simulate(seed=1, **kwargs)
    assert "\n" not in str(raised.value)


# ---- determinism -------------------------------------------------------------------


def test_same_arguments_give_identical_output() -> None:
    first = simulate(hosts=4, duration_s=1800, seed=11)
    second = simulate(hosts=4, duration_s=1800, seed=11)
    assert first.table.equals(second.table)
    assert first.incidents == second.incidents


def test_different_seeds_give_different_data() -> None:
    first = simulate(hosts=4, duration_s=1800, seed=11)
    second = simulate(hosts=4, duration_s=1800, seed=12)
    assert not first.table.equals(second.table)
    assert not np.array_equal(first.table["mem_used_bytes"].to_numpy(), second.table["mem_used_bytes"].to_numpy())


# ---- CPU ---------------------------------------------------------------------------


def test_percentages_are_within_0_and_100(fleet: Simulation) -> None:
    for name in fleet.table.column_names:
        if name.endswith("_pct"):
            values = fleet.table[name].drop_null().to_numpy()
            assert values.min() >= 0.0 and values.max() <= 100.0, name


def test_each_core_sums_to_100_and_missing_cores_are_null(fleet_hosts: dict) -> None:
    assert len({cores_of(host) for host in fleet_hosts.values()}) > 1, "the fleet should mix core counts"
    max_cores = max(cores_of(host) for host in fleet_hosts.values())
    for host in fleet_hosts.values():
        cores = cores_of(host)
        for n in range(max_cores):
            modes = [host[catalogue.core_metric(n, mode)] for mode in MODES]
            if n < cores:
                assert np.allclose(sum(modes), 100.0, rtol=0, atol=1e-9)
            else:
                assert all(np.isnan(values).all() for values in modes)


def test_cpu_totals_are_the_mean_over_the_hosts_cores(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        for mode in MODES:
            per_core = np.stack([host[catalogue.core_metric(n, mode)] for n in range(cores_of(host))])
            assert np.allclose(host[f"cpu_{mode}_pct"], per_core.mean(axis=0), rtol=0, atol=1e-9)


# ---- counters and gauges -------------------------------------------------------------


COUNTERS = [m.name for m in catalogue.METRICS if m.kind == catalogue.COUNTER]


def test_counters_are_whole_non_decreasing_and_start_well_above_zero(fleet_hosts: dict) -> None:
    assert all(name.endswith("_total") for name in COUNTERS)
    for host in fleet_hosts.values():
        for name in COUNTERS:
            values = host[name]
            # The host has been up for a day or more, at about its current rate.
            assert values[0] > 0 and values[0] >= 0.3 * np.nanmedian(rate(values, 5.0)) * 86_400, name
            assert (np.diff(values) >= 0).all(), name
            assert (values == np.floor(values)).all(), name


def test_counters_integrate_a_rate_independent_of_the_interval() -> None:
    """The same hosts sampled at 5 s and 10 s show the same benign per-second rates."""
    runs = {}
    for interval_s in (5.0, 10.0):
        hosts = split_by_host(simulate(hosts=2, duration_s=HOUR_S, seed=5, interval_s=interval_s))
        runs[interval_s] = hosts
    for name in ("net_rx_bytes_total", "net_tx_packets_total", "disk_write_ops_total", "context_switches_total"):
        for host_name in runs[5.0]:
            mean_rates = []
            for interval_s, hosts in runs.items():
                host = hosts[host_name]
                benign = (host["label"] == 0) & (np.roll(host["label"], 1) == 0)
                benign[0] = False
                mean_rates.append(np.nanmean(rate(host[name], interval_s)[benign]))
            assert mean_rates[1] == pytest.approx(mean_rates[0], rel=0.25), (host_name, name)


def test_uptime_advances_by_the_interval(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        uptime = host["uptime_seconds"]
        assert uptime[0] >= 86_400
        assert np.allclose(np.diff(uptime), 5.0, rtol=0, atol=1e-6)


def test_memory_accounting_is_consistent(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        total, used, free = host["mem_total_bytes"], host["mem_used_bytes"], host["mem_free_bytes"]
        available, swap_total, swap_used = host["mem_available_bytes"], host["swap_total_bytes"], host["swap_used_bytes"]
        assert (used >= 0).all() and (free >= 0).all() and (swap_used >= 0).all()
        assert (used + free <= total).all()
        assert ((free <= available) & (available <= total)).all()
        assert (swap_used <= swap_total).all() and (swap_total > 0).all()
        assert 4 * 2**30 <= total[0] <= 64 * 2**30


def test_cpu_count_is_the_number_of_cores_reported(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        cores = cores_of(host)
        assert 2 <= cores <= 16 and (host["cpu_count"] == cores).all()
        reported = [name for name in host if name.startswith("cpu_core") and not np.isnan(host[name]).any()]
        assert sorted(reported) == sorted(catalogue.core_metric(n, mode) for n in range(cores) for mode in MODES)


def test_task_gauges_are_plausible(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        processes, threads = host["process_count"], host["thread_count"]
        assert (processes > 20).all() and (threads > processes).all()
        assert (host["procs_running_count"] >= 1).all() and (host["procs_blocked_count"] >= 0).all()
        assert (host["tcp_established_count"] >= 0).all()
        for name in ("process_count", "thread_count", "procs_running_count", "procs_blocked_count", "tcp_established_count"):
            assert (host[name] == np.round(host[name])).all(), name
        for name in ("load_avg_1m", "load_avg_5m", "load_avg_15m"):
            assert (host[name] >= 0).all() and (host[name] < 20 * cores_of(host) + 50).all(), name


def test_load_averages_are_the_kernels_exponential_averages(fleet_hosts: dict) -> None:
    for host in fleet_hosts.values():
        # procs_running counts the reader of /proc/stat, which the kernel's tick-time sample does not.
        runnable = host["procs_running_count"] - 1 + host["procs_blocked_count"]
        for name, window_s in (("load_avg_1m", 60), ("load_avg_5m", 300), ("load_avg_15m", 900)):
            load = host[name]
            decay = math.exp(-5.0 / window_s)
            assert np.allclose(load[1:], decay * load[:-1] + (1 - decay) * runnable[1:], rtol=1e-9, atol=1e-9)
        # Longer windows are smoother.
        assert np.std(np.diff(host["load_avg_15m"])) < np.std(np.diff(host["load_avg_1m"]))


def test_baseline_follows_a_daily_cycle() -> None:
    sim = simulate(hosts=3, duration_s=24 * HOUR_S, seed=4, interval_s=60.0)
    for host in split_by_host(sim).values():
        busy = (100.0 - host["cpu_idle_pct"] - host["cpu_iowait_pct"]).reshape(24, 60)
        hourly = np.median(busy, axis=1)
        assert hourly.max() > 1.5 * hourly.min()


# ---- incidents and labels ----------------------------------------------------------


def check_schedule(sim: Simulation, hosts: int, duration_s: float, quiet_s: float) -> None:
    names = {f"sim-host-{i:02d}" for i in range(hosts)}
    assert sim.incidents == sorted(sim.incidents, key=lambda i: (i.host, i.start_ns))
    end_of_run = DEFAULT_START_NS + round(duration_s * 1e9)
    for host in names:
        windows = [i for i in sim.incidents if i.host == host]
        previous_end = DEFAULT_START_NS - round(quiet_s * 1e9)
        for incident in windows:
            assert isinstance(incident, Incident) and incident.kind in INCIDENT_KINDS
            assert incident.start_ns - previous_end >= quiet_s * 1e9, "incidents need quiet time around them"
            assert incident.end_ns - incident.start_ns <= 0.25 * duration_s * 1e9
            previous_end = incident.end_ns
        assert end_of_run - previous_end >= quiet_s * 1e9


@pytest.mark.parametrize("seed", range(5))
def test_a_six_host_two_hour_run_has_every_kind_and_a_benign_host(seed: int) -> None:
    sim = simulate(hosts=6, duration_s=2 * HOUR_S, seed=seed, interval_s=10.0)
    check_schedule(sim, hosts=6, duration_s=2 * HOUR_S, quiet_s=300.0)
    assert {i.kind for i in sim.incidents} == set(INCIDENT_KINDS)
    assert 0.5 * 12 <= len(sim.incidents) <= 1.5 * 12, "about one incident per host-hour"
    assert len({i.host for i in sim.incidents}) <= 5, "at least one host stays benign"
    for incident in sim.incidents:
        assert 180e9 <= incident.end_ns - incident.start_ns <= 600e9


@pytest.mark.parametrize("hosts", [4, 5, 9, 16])
def test_fleets_of_four_or_more_keep_a_benign_host(hosts: int) -> None:
    sim = simulate(hosts=hosts, duration_s=HOUR_S, seed=hosts, interval_s=30.0)
    assert len({i.host for i in sim.incidents}) < hosts
    assert sim.incidents, "an hour of a fleet has incidents"


@pytest.mark.parametrize(("duration_s", "interval_s"), [(60.0, 5.0), (20.0, 5.0), (600.0, 1.0)])
def test_short_runs_get_shorter_incidents(duration_s: float, interval_s: float) -> None:
    sim = simulate(hosts=1, duration_s=duration_s, seed=1, interval_s=interval_s)
    assert len(sim.incidents) == 1
    check_schedule(sim, hosts=1, duration_s=duration_s, quiet_s=interval_s)


def test_labels_mark_exactly_the_incident_windows(fleet: Simulation, fleet_hosts: dict) -> None:
    for name, host in fleet_hosts.items():
        expected_label = np.zeros(len(host["ts_ns"]), dtype=np.int8)
        expected_kind = np.full(len(host["ts_ns"]), None, dtype=object)
        for incident in (i for i in fleet.incidents if i.host == name):
            inside = (host["ts_ns"] >= incident.start_ns) & (host["ts_ns"] < incident.end_ns)
            assert inside.any()
            expected_label[inside] = 1
            expected_kind[inside] = incident.kind
        assert (host["label"] == expected_label).all()
        assert list(host["incident"]) == list(expected_kind)


def incidents_of(fleets: list, kind: str):
    """(incident, host columns, window mask, mask of the 5 benign minutes before it) for each incident of kind."""
    found = []
    for sim, hosts in fleets:
        for incident in sim.incidents:
            if incident.kind == kind:
                host = hosts[incident.host]
                ts = host["ts_ns"]
                window = (ts >= incident.start_ns) & (ts < incident.end_ns)
                before = (ts < incident.start_ns) & (ts >= incident.start_ns - 300 * 10**9)
                found.append((incident, host, window, before))
    assert found, f"no {kind} in the test fleets"
    return found


def median_rate(host: dict, name: str, rows: np.ndarray) -> float:
    return float(np.nanmedian(rate(host[name], 5.0)[rows]))


def test_crypto_miner_pins_every_core_in_user_mode(fleets: list) -> None:
    for _, host, window, before in incidents_of(fleets, "crypto_miner"):
        cores = cores_of(host)
        for n in range(cores):
            assert (host[catalogue.core_metric(n, "user")][window] >= 90.0).all()
        load = host["load_avg_1m"][window]
        settled = np.median(load[len(load) // 2 :])  # a 1 min average has converged after 90 s
        assert settled >= max(0.8 * cores, np.median(host["load_avg_1m"][before]) + 0.5 * cores)
        for flat in ("disk_read_ops_total", "disk_write_bytes_total", "net_rx_bytes_total", "net_tx_bytes_total"):
            assert 0.6 < median_rate(host, flat, window) / median_rate(host, flat, before) < 1.6, flat


def test_memory_leak_ramps_used_memory_until_swap_takes_over(fleets: list) -> None:
    for _, host, window, _ in incidents_of(fleets, "memory_leak"):
        total = host["mem_total_bytes"][0]
        used, available, free = (host[name][window] for name in ("mem_used_bytes", "mem_available_bytes", "mem_free_bytes"))
        swap = host["swap_used_bytes"][window]
        ramp = slice(0, max(3, len(used) // 2))
        assert np.corrcoef(np.arange(len(used))[ramp], used[ramp])[0, 1] > 0.99, "a steady linear climb"
        assert used[-1] - used[0] > 0.2 * total
        assert available[-1] < min(available[0], 0.1 * total) and free[-1] < free[0]
        assert swap[-1] > swap[0] + 0.25 * 2**30
        # Swap only grows once memory is nearly exhausted.
        plenty = available >= 0.1 * total
        assert np.ptp(swap[plenty]) < 0.01 * host["swap_total_bytes"][0]


def test_port_scan_multiplies_failed_connects_and_resets(fleets: list) -> None:
    packet_ratios = []
    for _, host, window, before in incidents_of(fleets, "port_scan"):
        for name in ("tcp_attempt_fails_total", "tcp_out_rsts_total"):
            ratio = median_rate(host, name, window) / max(median_rate(host, name, before), 0.1)
            assert 100 <= ratio <= 10_000, name
        assert median_rate(host, "tcp_active_opens_total", window) > 5 * median_rate(host, "tcp_active_opens_total", before) + 100
        packet_ratios.append(median_rate(host, "net_tx_packets_total", window) / median_rate(host, "net_tx_packets_total", before))
        for name in ("net_tx_bytes_total", "net_rx_bytes_total"):
            assert 0.7 < median_rate(host, name, window) / median_rate(host, name, before) < 1.4, name
    # Packets go up a little (a SYN per probe), by less than traffic noise on busy hosts.
    assert np.median(packet_ratios) > 1.05 and max(packet_ratios) < 4.0


def test_data_exfiltration_surges_outbound_bytes(fleets: list) -> None:
    for _, host, window, before in incidents_of(fleets, "data_exfiltration"):
        assert median_rate(host, "net_tx_packets_total", window) > 3 * median_rate(host, "net_tx_packets_total", before)
        surge = median_rate(host, "net_tx_bytes_total", window) - median_rate(host, "net_tx_bytes_total", before)
        inbound_change = median_rate(host, "net_rx_bytes_total", window) - median_rate(host, "net_rx_bytes_total", before)
        assert surge > 15e6 and abs(inbound_change) < 0.03 * surge


def test_fork_storm_explodes_forks_and_the_process_table(fleets: list) -> None:
    for _, host, window, before in incidents_of(fleets, "fork_storm"):
        forks = median_rate(host, "process_forks_total", window)
        assert forks > 500 and forks > 20 * median_rate(host, "process_forks_total", before)
        assert host["process_count"][window].max() > host["process_count"][before].max() + 500
        assert host["thread_count"][window].max() > host["thread_count"][before].max() + 500
        assert np.median(host["procs_running_count"][window]) > np.median(host["procs_running_count"][before]) + cores_of(host)
        assert median_rate(host, "context_switches_total", window) > 1.2 * median_rate(host, "context_switches_total", before)
        assert np.median(host["cpu_system_pct"][window]) > np.median(host["cpu_system_pct"][before]) + 10


def test_disk_thrash_saturates_the_disks(fleets: list) -> None:
    for _, host, window, before in incidents_of(fleets, "disk_thrash"):
        for name in ("disk_read_ops_total", "disk_write_ops_total", "disk_read_bytes_total", "disk_write_bytes_total"):
            assert median_rate(host, name, window) > 5 * median_rate(host, name, before), name
        assert np.median(host["disk_busy_pct"][window]) > 90
        assert np.median(host["cpu_iowait_pct"][window]) > np.median(host["cpu_iowait_pct"][before]) + 10
