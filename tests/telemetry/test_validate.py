import pytest

from amoskys.telemetry import validate
from amoskys.telemetry.telemetry_pb2 import FlowRecord, ProcessEvent

NOW = 1_767_225_600_000_000_000
SKEW = 300 * 10**9


@pytest.mark.parametrize(
    "host, ts, reason",
    [("", NOW, "missing_host"), ("h", 0, "bad_timestamp"), ("h", NOW + SKEW + 1, "future_timestamp")],
)
def test_header_problems(host, ts, reason):
    assert validate.check_header(host, ts, NOW, SKEW).reason == reason


def test_header_within_skew_is_fine():
    assert validate.check_header("h", NOW + SKEW, NOW, SKEW) is None


def test_metric_set_names_the_first_bad_metric():
    assert validate.metric_set(("cpu_user_pct", "shoe_size")).reason == "unknown_metric"
    assert validate.metric_set(("cpu_user_pct", "mem_used_mb")).reason == "wrong_unit"
    assert validate.metric_set(()).reason == "empty_snapshot"
    assert validate.metric_set(("cpu_user_pct", "cpu_user_pct")).reason == "repeated_metric"


def test_metric_set_checks_a_matrix_of_values():
    import numpy as np

    checked = validate.metric_set(("cpu_user_pct", "mem_used_bytes"))
    values = np.array([[50.0, 1e9], [101.0, 1e9], [5.0, -1.0], [np.nan, 0.0], [100.0, 0.0]])
    assert checked.rows_in_range(values).tolist() == [True, False, False, False, True]
    problem = checked.row_problem("web-1", values[2])
    assert problem.reason == "bad_value" and "mem_used_bytes=-1.0" in problem.detail and "web-1" in problem.detail


def test_flow_and_process_checks():
    good_flow = FlowRecord(host_id="h", src_ip="127.0.0.1", dst_ip="127.0.0.2", protocol="tcp", dst_port=22)
    assert validate.check_flow(good_flow) is None
    assert validate.check_flow(FlowRecord(host_id="h", src_ip="a", dst_ip="b", protocol="carrier-pigeon")).reason == "bad_value"
    assert validate.check_flow(FlowRecord(host_id="h", src_ip="a", dst_ip="b", protocol="udp", dst_port=70000)).reason == "bad_value"
    assert validate.check_process(ProcessEvent(host_id="h", kind=ProcessEvent.EXIT, pid=7)) is None
    assert validate.check_process(ProcessEvent(host_id="h", pid=7)).reason == "bad_value"
