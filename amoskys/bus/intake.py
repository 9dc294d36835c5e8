"""Publish: one envelope from an authenticated peer in, one counted Ack out.

The checks, cheapest and least trusting first:

1. size (before parsing: ``parse_envelope`` is the gRPC deserializer) -> INVALID ``oversized``;
   bytes that are no Envelope -> INVALID ``malformed``;
2. the envelope's agent id is the peer's certificate CN -> else UNAUTHORIZED ``identity_mismatch``;
   a sequence number SQLite can hold and an idempotency key of 1-64 bytes -> else INVALID;
3. the agent has a registered Ed25519 key -> else UNAUTHORIZED ``unknown_key``;
4. the signature over the exact payload bytes, then the payload parsed
   (``signing.open_envelope``) -> UNAUTHORIZED ``bad_signature``, INVALID ``malformed`` or
   ``header_mismatch``;
5. a free commit slot (at most ``max_pending`` envelopes await their commit) -> else
   RETRY ``overloaded`` with a backoff hint;
6. replay protection (``replay.ReplayGuard``) -> INVALID ``replayed`` / ``stale``, its
   events counted ``dropped:<reason>``; a resend of a stored envelope goes on, and the
   store counts its events duplicate;
7. the store: schema checks (rejected events counted by reason), then a durable commit.
   OK is answered only once the commit's future resolved (``synchronous=FULL``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from amoskys.bus import bus_pb2
from amoskys.bus.accounting import Accounting
from amoskys.bus.feed import CommitFeed
from amoskys.bus.keyring import KeyRing
from amoskys.bus.replay import ReplayGuard, Verdict
from amoskys.bus.signing import EnvelopeRejected, open_envelope
from amoskys.errors import StoreError
from amoskys.store import Store
from amoskys.telemetry.telemetry_pb2 import Envelope, EventBatch
from amoskys.timeutil import now_ns

log = logging.getLogger(__name__)

Ack = bus_pb2.Ack
MAX_SEQ = 2**63 - 1  # the store keeps sequence numbers as SQLite integers
MAX_KEY_BYTES = 64  # signing.idempotency_key makes 16
RETRY_MS_PER_PENDING = 5  # about one group commit of a 500-event batch
RETRY_MS_RANGE = (10, 5000)
DURABLE_COUNT_WAIT_S = 5.0  # how long a refusal waits for its counts to be durable before answering
_STATUS_NAMES = {Ack.OK: "ok", Ack.RETRY: "retry", Ack.INVALID: "invalid", Ack.UNAUTHORIZED: "unauthorized"}
_REJECTION_STATUS = {"bad_signature": Ack.UNAUTHORIZED}  # any other open_envelope reason is INVALID


@dataclass(frozen=True)
class Refused:
    """What the deserializer hands on instead of an Envelope it would not parse."""

    reason: str  # oversized, malformed
    size: int


def envelope_parser(max_message_bytes: int):
    """The gRPC request deserializer for Publish: checks the size before parsing anything."""

    def parse(data: bytes) -> Envelope | Refused:
        if len(data) > max_message_bytes:
            return Refused("oversized", len(data))
        try:
            return Envelope.FromString(data)
        except DecodeError:
            return Refused("malformed", len(data))

    return parse


def count_events(batch: EventBatch) -> int:
    """How many events a batch holds, each row of a MetricFrame counted as one."""
    return sum(len(e.frame.host_ids) if e.WhichOneof("body") == "frame" else 1 for e in batch.events)


class Intake:
    def __init__(self, store: Store, keys: KeyRing, guard: ReplayGuard, accounting: Accounting, feed: CommitFeed,
                 max_pending: int):  # fmt: skip
        self.store = store
        self.keys = keys
        self.guard = guard
        self.accounting = accounting
        self.feed = feed
        self.max_pending = max(1, max_pending)
        self._pending = 0  # envelopes handed to the store and not committed yet
        self._pending_lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def publish(self, envelope: Envelope | Refused, peer: str | None) -> Ack:
        started = time.perf_counter()
        if isinstance(envelope, Refused):
            return self._refuse(Ack.INVALID, envelope.reason, 0, started)
        seq = envelope.seq
        if peer is None or envelope.agent_id != peer:
            return self._refuse(Ack.UNAUTHORIZED, "identity_mismatch", seq, started)
        if seq > MAX_SEQ:
            return self._refuse(Ack.INVALID, "bad_sequence", seq, started)
        if not 0 < len(envelope.idempotency_key) <= MAX_KEY_BYTES:
            return self._refuse(Ack.INVALID, "bad_idempotency_key", seq, started)
        key = self.keys.get(peer)
        if key is None:
            return self._refuse(Ack.UNAUTHORIZED, "unknown_key", seq, started)
        try:
            batch = open_envelope(envelope, key)
        except EnvelopeRejected as rejected:
            return self._refuse(_REJECTION_STATUS.get(rejected.reason, Ack.INVALID), rejected.reason, seq, started)
        if not self._take_slot():
            return self._retry("overloaded", seq, started)
        try:
            return self._admit_and_store(envelope, batch, started)
        finally:
            self._free_slot()

    def retry_after_ms(self) -> int:
        """The backoff hint: proportional to the backlog, with +-50% jitter so that agents do not come back together."""
        low, high = RETRY_MS_RANGE
        return int(min(high, max(low, self._pending * RETRY_MS_PER_PENDING * random.uniform(0.5, 1.5))))

    # -- steps ---------------------------------------------------------------------

    def _admit_and_store(self, envelope: Envelope, batch: EventBatch, started: float) -> Ack:
        agent, seq, key = envelope.agent_id, envelope.seq, envelope.idempotency_key
        verdict = self.guard.admit(agent, seq, key, envelope.ts_ns, now_ns())
        if verdict in (Verdict.REPLAYED, Verdict.STALE):
            dropped = Counter({f"dropped:{verdict.value}": count_events(batch)})
            return self._refuse(Ack.INVALID, verdict.value, seq, started, dropped)
        try:
            result = self.store.submit(batch.events, agent=agent, envelope=envelope).result()
        except Exception as exc:  # nothing was stored: the agent keeps the envelope and resends it
            if verdict is Verdict.NEW:
                self.guard.release(agent, seq, key)
            if isinstance(exc, StoreError):  # the commit failed (disk full, ...)
                log.error("envelope %d of %s not stored: %s", seq, agent, exc)
                return self._retry("store_unavailable", seq, started)
            log.exception("envelope %d of %s not stored: a bug", seq, agent)
            return self._retry("internal_error", seq, started)
        self.feed.notify()
        self.accounting.count("ok", "", result.outcomes, latency_s=time.perf_counter() - started)
        return Ack(status=Ack.OK, seq=seq, stored=result.stored, duplicate=result.duplicate, rejected=result.rejected)

    def _refuse(self, status: int, reason: str, seq: int, started: float, dropped: Counter | None = None) -> Ack:
        """Count a refused envelope, wait until the count is durable, then answer."""
        durable = self.accounting.count(_STATUS_NAMES[status], reason, dropped, dropped=True,
                                        latency_s=time.perf_counter() - started)  # fmt: skip
        if durable is not None:
            try:
                durable.result(DURABLE_COUNT_WAIT_S)
            except Exception as exc:  # the answer matters more than the count
                log.error("the count of a refused envelope (%s) is not persisted yet: %r", reason, exc)
        return Ack(status=status, reason=reason, seq=seq)

    def _retry(self, reason: str, seq: int, started: float) -> Ack:
        self.accounting.count("retry", reason, latency_s=time.perf_counter() - started)
        return Ack(status=Ack.RETRY, reason=reason, seq=seq, retry_after_ms=self.retry_after_ms())

    def _take_slot(self) -> bool:
        with self._pending_lock:
            if self._pending >= self.max_pending:
                return False
            self._pending += 1
            return True

    def _free_slot(self) -> None:
        with self._pending_lock:
            self._pending -= 1
