"""A tiny real EventBus on 127.0.0.1 for the runtime tests: plain gRPC, no TLS, scripted answers.

It verifies each envelope's signature and keeps the batches it accepts by idempotency
key, as the store does (a resend of an accepted envelope is OK and stored once). It can
be told to answer RETRY, INVALID (any reason, or ``stale`` for envelopes sealed before
a time), and it can be stopped and started again on the same port.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc

from amoskys.bus import bus_pb2, bus_pb2_grpc
from amoskys.bus.signing import EnvelopeRejected, open_envelope
from amoskys.errors import TransportError
from amoskys.telemetry.telemetry_pb2 import Envelope, EventBatch

Ack = bus_pb2.Ack


@dataclass
class Arrival:
    at: float  # time.monotonic()
    seq: int
    ts_ns: int
    status: int


@dataclass
class Script:
    retry: int = 0  # answer RETRY to this many next envelopes
    retry_after_ms: int = 300
    invalid: list[str] = field(default_factory=list)  # answer INVALID with these reasons, one per new envelope
    unauthorized: list[str] = field(default_factory=list)  # the same with UNAUTHORIZED
    stale_before_ns: int | None = None  # envelopes sealed before this are INVALID stale


class RecordingBus(bus_pb2_grpc.EventBusServicer):
    def __init__(self, public_key):
        self.public_key = public_key
        self.script = Script()
        self.stored: dict[bytes, EventBatch] = {}  # idempotency key -> batch, in acceptance order
        self.arrivals: list[Arrival] = []
        self.lock = threading.Lock()

    def Publish(self, envelope: Envelope, context) -> bus_pb2.Ack:
        try:
            batch = open_envelope(envelope, self.public_key)
        except EnvelopeRejected as exc:
            return self._answer(envelope, Ack(status=Ack.UNAUTHORIZED, reason=exc.reason))
        with self.lock:
            script = self.script
            if envelope.idempotency_key in self.stored:
                return self._answer(envelope, Ack(status=Ack.OK, duplicate=len(batch.events)))
            if script.retry > 0:
                script.retry -= 1
                retry = Ack(status=Ack.RETRY, reason="busy", retry_after_ms=script.retry_after_ms)
                return self._answer(envelope, retry)
            if script.unauthorized:
                return self._answer(envelope, Ack(status=Ack.UNAUTHORIZED, reason=script.unauthorized.pop(0)))
            if script.invalid:
                return self._answer(envelope, Ack(status=Ack.INVALID, reason=script.invalid.pop(0)))
            if script.stale_before_ns is not None and envelope.ts_ns < script.stale_before_ns:
                return self._answer(envelope, Ack(status=Ack.INVALID, reason="stale"))
            self.stored[envelope.idempotency_key] = batch
            return self._answer(envelope, Ack(status=Ack.OK, stored=len(batch.events)))

    def _answer(self, envelope: Envelope, ack: bus_pb2.Ack) -> bus_pb2.Ack:
        ack.seq = envelope.seq
        self.arrivals.append(Arrival(time.monotonic(), envelope.seq, envelope.ts_ns, ack.status))
        return ack

    def stored_events(self) -> list:
        with self.lock:
            return [event for batch in self.stored.values() for event in batch.events]

    def stored_seqs(self) -> list[int]:
        with self.lock:
            return [batch.seq for batch in self.stored.values()]


class LoopbackBus:
    """The RecordingBus served on 127.0.0.1; ``stop()`` and ``start()`` again keep the port."""

    def __init__(self, public_key):
        self.servicer = RecordingBus(public_key)
        self.port = 0
        self._server = None

    def start(self) -> LoopbackBus:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        bus_pb2_grpc.add_EventBusServicer_to_server(self.servicer, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert self.port, "could not listen on 127.0.0.1"
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class InsecureSender:
    """What BusClient does, without TLS: publish, and TransportError when the bus is unreachable."""

    def __init__(self, address: str, timeout_s: float = 2.0):
        # Short reconnect backoff, so that a bus that is back is found within a second.
        self.channel = grpc.insecure_channel(address, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ])  # fmt: skip
        self.stub = bus_pb2_grpc.EventBusStub(self.channel)
        self.timeout_s = timeout_s

    def publish(self, envelope: Envelope) -> bus_pb2.Ack:
        try:
            return self.stub.Publish(envelope, timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise TransportError(f"publish: {error.code().name}") from None

    def close(self) -> None:
        self.channel.close()
