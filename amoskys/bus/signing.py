"""Sealing a batch of events into a signed envelope, and opening one: the wire contract of the bus.

The agent serializes an ``EventBatch`` (which repeats its agent id, sequence number and
timestamp, so the signature covers them too) and signs exactly those bytes with its
Ed25519 key. The bus verifies the signature over the payload bytes *before* parsing
them (protobuf encoding is not canonical, so a re-serialized message might not match),
then checks that the batch's header agrees with the envelope's.

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics
>>> key = Ed25519PrivateKey.generate()
>>> envelope = seal([Event(metrics=HostMetrics(host_id="web-1", ts_ns=1))], "agent-a", 7, key, ts_ns=10)
>>> batch = open_envelope(envelope, key.public_key())
>>> (batch.agent_id, batch.seq, len(batch.events))
('agent-a', 7, 1)
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from amoskys.telemetry.telemetry_pb2 import Envelope, Event, EventBatch


class EnvelopeRejected(Exception):
    """An envelope that must not be stored; ``reason`` is the counted outcome, e.g. ``bad_signature``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def seal(events: Iterable[Event], agent_id: str, seq: int, key: Ed25519PrivateKey, ts_ns: int | None = None) -> Envelope:
    """A signed envelope holding events; its idempotency key is fixed by (agent, seq), so a resend reuses it."""
    ts_ns = time.time_ns() if ts_ns is None else ts_ns
    payload = EventBatch(agent_id=agent_id, seq=seq, ts_ns=ts_ns, events=list(events)).SerializeToString()
    return Envelope(agent_id=agent_id, seq=seq, ts_ns=ts_ns, idempotency_key=idempotency_key(agent_id, seq),
                    payload=payload, signature=key.sign(payload))  # fmt: skip


def idempotency_key(agent_id: str, seq: int) -> bytes:
    return hashlib.sha256(f"{agent_id}\x00{seq}".encode()).digest()[:16]


def open_envelope(envelope: Envelope, public_key: Ed25519PublicKey) -> EventBatch:
    """The verified batch inside envelope; raises ``EnvelopeRejected`` (bad_signature, malformed, header_mismatch)."""
    try:
        public_key.verify(envelope.signature, envelope.payload)
    except InvalidSignature:
        raise EnvelopeRejected("bad_signature", f"signature of {envelope.agent_id!r} seq {envelope.seq} does not verify") from None
    batch = EventBatch()
    try:
        batch.ParseFromString(envelope.payload)
    except DecodeError:
        raise EnvelopeRejected("malformed", "payload is not an EventBatch") from None
    if (batch.agent_id, batch.seq, batch.ts_ns) != (envelope.agent_id, envelope.seq, envelope.ts_ns):
        raise EnvelopeRejected("header_mismatch", "the signed batch's agent, seq or time differ from the envelope's")
    return batch
