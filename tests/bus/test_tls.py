"""Mutual TLS: without a certificate from the bus's CA, still valid, nothing gets through."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest

from amoskys.bus import bus_pb2, bus_pb2_grpc, certs
from amoskys.bus.client import BusClient
from amoskys.errors import TransportError

from .conftest import frame_events


def channel_health(address: str, credentials: grpc.ChannelCredentials) -> grpc.RpcError:
    """The error a Health call over a channel with these credentials gets (it must get one)."""
    with grpc.secure_channel(address, credentials) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            bus_pb2_grpc.EventBusStub(channel).Health(bus_pb2.HealthRequest(), timeout=5)
    return refused.value


def test_no_client_certificate_is_refused(bus, certs_dir, client_a):
    ca = (certs_dir / "ca.crt").read_bytes()
    error = channel_health(bus.listening.address, grpc.ssl_channel_credentials(root_certificates=ca))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert client_a.health().serving  # the bus itself is fine


def test_certificate_of_another_ca_is_refused(bus, certs_dir, tmp_path, client_a):
    other = tmp_path / "other"
    certs.init(other, agents=("a",))  # same agent name, same layout, another CA
    impostor = certs.load_agent_credentials(other, "a")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(certs_dir / "ca.crt").read_bytes(),  # it trusts the real bus ...
        private_key=impostor.key_pem, certificate_chain=impostor.cert_pem,  # ... the bus must not trust it
    )  # fmt: skip
    assert channel_health(bus.listening.address, credentials).code() == grpc.StatusCode.UNAVAILABLE
    assert client_a.publish_events(frame_events(5), seq=1).stored == 5
    assert sum(bus.accounting.envelopes.values()) == 1  # the impostor never reached a handler


def test_expired_client_certificate_is_refused(bus, certs_dir, client_a):
    now = dt.datetime.now(dt.timezone.utc)
    day = dt.timedelta(days=1)
    certs.issue_agent(certs_dir, "expired", not_before=now - 30 * day, not_after=now - day)
    with BusClient(bus.listening.address, certs_dir, "expired", timeout_s=5) as expired:
        with pytest.raises(TransportError) as refused:
            expired.publish_events(frame_events(5), seq=1)
    message = str(refused.value)
    assert "unreachable or refused" in message and "\n" not in message
    assert client_a.publish_events(frame_events(5), seq=1).stored == 5
    assert sum(bus.accounting.envelopes.values()) == 1


def test_unreachable_bus_is_one_transport_error(certs_dir):
    from .conftest import free_port

    with BusClient(f"127.0.0.1:{free_port()}", certs_dir, "a", timeout_s=2) as client:
        with pytest.raises(TransportError, match="unreachable"):
            client.health()
        with pytest.raises(TransportError, match="unreachable"):
            client.publish_events(frame_events(1), seq=1)
