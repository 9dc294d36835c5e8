"""The agent's side of the bus: an mTLS channel, publish, subscribe, health.

    with BusClient("127.0.0.1:7878", Path("data/certs"), "host-agent") as bus:
        ack = bus.publish_events(events, seq=42)  # ack.status == Ack.OK once durable

Errors reaching the bus (unreachable, TLS refused, deadline exceeded) raise
``TransportError`` with one line; the bus's own answers come back as ``Ack`` values.
An envelope too big for the bus's gRPC limit comes back as INVALID ``oversized``, like
one the bus refused itself, so an agent handles both the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from amoskys.bus import bus_pb2, bus_pb2_grpc
from amoskys.bus.certs import AgentCredentials, load_agent_credentials
from amoskys.bus.signing import seal
from amoskys.config import BusConfig
from amoskys.errors import TransportError
from amoskys.telemetry.telemetry_pb2 import Envelope, Event

Ack = bus_pb2.Ack
RECEIVE_SLACK_BYTES = 64 * 1024  # a StoredBatch is its payload plus a small header


class BusClient:
    """A channel to the bus at address ("host:port") as agent, with the agent's credentials from certs_dir."""

    def __init__(self, address: str, certs_dir: Path, agent: str, timeout_s: float = 10.0,
                 max_message_bytes: int = BusConfig.max_message_bytes):  # fmt: skip
        self.address = address
        self.agent = agent
        self.timeout_s = timeout_s
        self.credentials: AgentCredentials = load_agent_credentials(Path(certs_dir), agent)
        channel_credentials = grpc.ssl_channel_credentials(
            root_certificates=self.credentials.ca_pem,
            private_key=self.credentials.key_pem,
            certificate_chain=self.credentials.cert_pem,
        )
        # Sending is not capped here: the bus judges sizes and counts what it refuses.
        self.channel = grpc.secure_channel(
            address, channel_credentials,
            options=[("grpc.max_receive_message_length", 2 * max_message_bytes + RECEIVE_SLACK_BYTES)],
        )  # fmt: skip
        self._stub = bus_pb2_grpc.EventBusStub(self.channel)

    def publish(self, envelope: Envelope) -> Ack:
        """The bus's ack for envelope; OK means durably stored (see the ack's counts)."""
        try:
            return self._stub.Publish(envelope, timeout=self.timeout_s)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (error.details() or ""):
                return Ack(status=Ack.INVALID, reason="oversized", seq=envelope.seq)
            raise self._transport_error("publish", error) from None

    def publish_events(self, events: Iterable[Event], seq: int, ts_ns: int | None = None) -> Ack:
        """Seal events as envelope number seq of this agent (signed with its key), and publish it."""
        return self.publish(self.seal(events, seq, ts_ns))

    def seal(self, events: Iterable[Event], seq: int, ts_ns: int | None = None) -> Envelope:
        return seal(events, self.agent, seq, self.credentials.signing_key, ts_ns=ts_ns)

    def subscribe(self, after_position: int = 0, subscriber: str = "") -> Iterator[bus_pb2.StoredBatch]:
        """Stored batches after after_position, then new ones as they are stored; runs until closed."""
        request = bus_pb2.SubscribeRequest(after_position=after_position, subscriber=subscriber or self.agent)
        stream = self._stub.Subscribe(request)
        try:
            yield from stream
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                raise self._transport_error("subscribe", error) from None
        finally:
            stream.cancel()

    def health(self) -> bus_pb2.HealthReply:
        try:
            return self._stub.Health(bus_pb2.HealthRequest(), timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise self._transport_error("health check", error) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> BusClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _transport_error(self, what: str, error: grpc.RpcError) -> TransportError:
        code = error.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return TransportError(f"{what}: the bus at {self.address} did not answer within {self.timeout_s:g}s")
        details = " ".join((error.details() or "").split())[:200]
        if code == grpc.StatusCode.UNAVAILABLE:
            return TransportError(
                f"{what}: the bus at {self.address} is unreachable or refused agent {self.agent!r}: {details}"
            )
        return TransportError(f"{what}: the bus at {self.address} answered {code.name}: {details}")
