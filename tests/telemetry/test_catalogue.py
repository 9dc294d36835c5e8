import pytest

from amoskys.telemetry import catalogue
from amoskys.telemetry.catalogue import COUNTER, GAUGE, UNITS

# What the foundation issue asks the catalogue to cover, as canonical names.
REQUIRED = [
    "uptime_seconds",
    "cpu_user_pct", "cpu_system_pct", "cpu_idle_pct", "cpu_iowait_pct",
    "cpu_core0_user_pct", "cpu_core0_system_pct", "cpu_core0_idle_pct", "cpu_core0_iowait_pct",
    "mem_total_bytes", "mem_used_bytes", "mem_free_bytes", "mem_available_bytes", "swap_used_bytes",
    "disk_read_ops_total", "disk_write_ops_total", "disk_read_bytes_total", "disk_write_bytes_total", "disk_busy_pct",
    "net_rx_bytes_total", "net_tx_bytes_total", "net_rx_packets_total", "net_tx_packets_total",
    "net_rx_errors_total", "net_tx_errors_total", "net_rx_drops_total", "net_tx_drops_total",
    "load_avg_1m", "load_avg_5m", "load_avg_15m",
    "process_count", "thread_count", "context_switches_total",
    "tcp_active_opens_total", "tcp_passive_opens_total", "tcp_attempt_fails_total", "tcp_out_rsts_total",
    "tcp_established_count",
]  # fmt: skip


@pytest.mark.parametrize("name", REQUIRED)
def test_required_metric_is_in_the_catalogue(name):
    metric = catalogue.lookup(name)
    assert metric is not None, name
    assert metric.description


def test_names_are_unique_snake_case_with_a_unit_suffix():
    names = [m.name for m in catalogue.METRICS]
    assert len(names) == len(set(names))
    for metric in catalogue.METRICS:
        assert metric.name == metric.name.lower() and " " not in metric.name
        assert metric.unit in UNITS
        assert metric.name.endswith(UNITS[metric.unit][2]), f"{metric.name} does not end in a {metric.unit} suffix"


def test_counters_and_only_counters_end_in_total():
    for metric in catalogue.METRICS:
        assert metric.kind in (GAUGE, COUNTER)
        assert metric.name.endswith("_total") == (metric.kind == COUNTER), metric.name


def test_per_core_names_resolve_to_their_template():
    assert catalogue.lookup("cpu_core15_iowait_pct").name == "cpu_core{n}_iowait_pct"
    assert catalogue.lookup("cpu_core{n}_user_pct") is None  # the template itself is not a metric
    assert catalogue.lookup("cpu_corex_user_pct") is None
    assert catalogue.core_metric(2, "idle") == "cpu_core2_idle_pct"


def test_wrong_unit_names_point_to_the_canonical_one():
    assert catalogue.wrong_unit_hint("disk_read_kb_total") == "disk_read_bytes_total"
    assert catalogue.wrong_unit_hint("uptime_ms") == "uptime_seconds"
    assert catalogue.wrong_unit_hint("process_forks_total") is None  # canonical, not a unit slip


@pytest.mark.parametrize(
    "name, value, ok",
    [
        ("cpu_user_pct", 0.0, True), ("cpu_user_pct", 100.0, True), ("cpu_user_pct", 100.01, False),
        ("cpu_user_pct", -0.1, False), ("mem_used_bytes", 0.0, True), ("mem_used_bytes", -1.0, False),
        ("mem_used_bytes", float("inf"), False), ("load_avg_1m", float("nan"), False), ("load_avg_1m", 37.5, True),
    ],
)  # fmt: skip
def test_value_ranges_follow_the_unit(name, value, ok):
    assert catalogue.value_in_range(catalogue.lookup(name), value) is ok
