import subprocess
import sys
from pathlib import Path

import pytest

from amoskys.telemetry.telemetry_pb2 import Envelope, Event, EventBatch, FlowRecord, HostMetrics, MetricFrame, ProcessEvent

ROOT = Path(__file__).resolve().parents[2]
# each .proto with the files generated from it (the bus's gRPC service code too), as `make proto` makes them
PROTOS = {
    "amoskys/telemetry/telemetry.proto": ("telemetry_pb2.py", "telemetry_pb2.pyi"),
    "amoskys/bus/bus.proto": ("bus_pb2.py", "bus_pb2.pyi", "bus_pb2_grpc.py"),
}


@pytest.mark.parametrize("proto", PROTOS)
def test_committed_generated_code_matches_the_schema(tmp_path, proto):
    """Whoever edits a .proto must run `make proto`; this catches it when they don't."""
    outputs = [f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    if "bus_pb2_grpc.py" in PROTOS[proto]:
        outputs.append(f"--grpc_python_out={tmp_path}")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT), *outputs, proto], check=True)
    folder = Path(proto).parent
    for generated in PROTOS[proto]:
        fresh = (tmp_path / folder / generated).read_text()
        assert fresh == (ROOT / folder / generated).read_text(), f"{generated} is stale: run `make proto`"


def test_a_signed_batch_round_trips_byte_for_byte():
    batch = EventBatch(
        agent_id="host-agent-1", seq=42, ts_ns=1_767_225_600_000_000_000,
        events=[
            Event(metrics=HostMetrics(host_id="web-1", ts_ns=1_767_225_600_000_000_000, metrics={"cpu_user_pct": 9.5})),
            Event(frame=MetricFrame(names=["load_avg_1m"], host_ids=["a", "b"], ts_ns=[1, 2], values=[0.5, 0.7])),
            Event(flow=FlowRecord(host_id="web-1", src_ip="127.0.0.1", dst_ip="127.0.0.2", dst_port=443, protocol="tcp")),
            Event(process=ProcessEvent(host_id="web-1", kind=ProcessEvent.START, pid=4242, name="sshd")),
        ],
    )  # fmt: skip
    payload = batch.SerializeToString()
    envelope = Envelope(agent_id="host-agent-1", seq=42, ts_ns=batch.ts_ns, idempotency_key=b"k" * 16,
                        payload=payload, signature=b"s" * 64)  # fmt: skip
    received = Envelope.FromString(envelope.SerializeToString())
    assert received.payload == payload  # the signed bytes arrive unchanged
    decoded = EventBatch.FromString(received.payload)
    assert [e.WhichOneof("body") for e in decoded.events] == ["metrics", "frame", "flow", "process"]
    assert decoded.events[0].metrics.metrics["cpu_user_pct"] == 9.5
    assert list(decoded.events[1].frame.values) == [0.5, 0.7]
