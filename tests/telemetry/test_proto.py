import subprocess
import sys
from pathlib import Path

from amoskys.telemetry.telemetry_pb2 import Envelope, Event, EventBatch, FlowRecord, HostMetrics, MetricFrame, ProcessEvent

ROOT = Path(__file__).resolve().parents[2]
PROTO = "amoskys/telemetry/telemetry.proto"


def test_committed_generated_code_matches_the_schema(tmp_path):
    """Whoever edits telemetry.proto must run `make proto`; this catches it when they don't."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT), f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", PROTO],
        check=True,
    )
    for generated in ("telemetry_pb2.py", "telemetry_pb2.pyi"):
        fresh = (tmp_path / "amoskys/telemetry" / generated).read_text()
        assert fresh == (ROOT / "amoskys/telemetry" / generated).read_text(), f"{generated} is stale: run `make proto`"


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
