"""Publish over real mTLS into a real store: what is acked, what is refused, and how it is counted."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from amoskys.bus import certs
from amoskys.bus.bus_pb2 import Ack
from amoskys.bus.client import BusClient
from amoskys.bus.signing import idempotency_key, seal
from amoskys.bus.server import BusServer
from amoskys.telemetry.telemetry_pb2 import Envelope, EventBatch

from .conftest import SEC, bus_config, frame_events, sql

STATUS = {Ack.OK: "ok", Ack.RETRY: "retry", Ack.INVALID: "invalid", Ack.UNAUTHORIZED: "unauthorized"}


def assert_healthy(client: BusClient, seq: int) -> None:
    """The same channel still gets a good envelope stored."""
    ack = client.publish_events(frame_events(10), seq=seq)
    assert (ack.status, ack.stored) == (Ack.OK, 10), ack


def test_publish_stores_the_events_and_acks_their_counts(bus, client_a, store_path):
    ack = client_a.publish_events(frame_events(50), seq=1)
    assert (ack.status, ack.seq, ack.stored, ack.duplicate, ack.rejected, ack.reason) == (Ack.OK, 1, 50, 0, 0, "")
    # OK means committed: a separate connection sees the rows and the envelope at once
    assert sql(store_path, "SELECT COUNT(*) FROM host_metrics") == [(50,)]
    assert sql(store_path, "SELECT seq, idempotency_key FROM envelopes") == [(1, idempotency_key("a", 1))]
    assert client_a.health().stored_events == 50


def test_schema_problems_are_counted_by_reason_and_still_acked(bus, client_a):
    events = frame_events(10) + frame_events(4, names=["cpu_user_pct", "mem_used_kb"])
    ack = client_a.publish_events(events, seq=1)
    assert (ack.status, ack.stored, ack.rejected) == (Ack.OK, 10, 4)
    assert bus.accounting.events["rejected:wrong_unit"] == 4


def test_resend_after_success_is_ok_and_duplicate(bus, client_a, store_path):
    envelope = client_a.seal(frame_events(20), seq=1)
    assert client_a.publish(envelope).stored == 20
    again = client_a.publish(envelope)
    assert (again.status, again.stored, again.duplicate) == (Ack.OK, 0, 20)
    assert sql(store_path, "SELECT COUNT(*) FROM host_metrics") == [(20,)]


def test_resend_below_the_window_is_still_a_duplicate(store_path, certs_dir):
    with BusServer(store_path, certs_dir, bus_config(seq_window=4)) as bus, \
            BusClient(bus.listening.address, certs_dir, "a") as client:  # fmt: skip
        first = client.seal(frame_events(5), seq=1)
        assert client.publish(first).stored == 5
        for seq in range(2, 12):
            assert client.publish_events(frame_events(1), seq=seq).status == Ack.OK
        assert bus.intake.guard.highest("a") == 11
        assert client.publish(first).duplicate == 5  # far below the window, but stored: the agent lost its ack
        never_sent = client.seal(frame_events(5), seq=3, ts_ns=first.ts_ns)
        never_sent.idempotency_key = b"fresh-key-000000"  # a never-stored key for a number below the window
        ack = client.publish(never_sent)
        assert (ack.status, ack.reason) == (Ack.INVALID, "replayed")


def test_replayed_sequence_number_is_invalid_and_counted(bus, client_a, store_path):
    assert client_a.publish_events(frame_events(5), seq=7).status == Ack.OK
    replay = client_a.seal(frame_events(5), seq=7)
    replay.idempotency_key = b"another-key-0000"  # same number, another batch: not a resend
    ack = client_a.publish(replay)
    assert (ack.status, ack.reason, ack.seq) == (Ack.INVALID, "replayed", 7)
    assert bus.accounting.events["dropped:replayed"] == 5
    assert bus.accounting.envelopes[("invalid", "replayed")] == 1
    assert sql(store_path, "SELECT COUNT(*) FROM host_metrics") == [(5,)]
    assert_healthy(client_a, seq=8)


def test_late_but_unseen_sequence_number_is_taken(bus, client_a):
    assert client_a.publish_events(frame_events(3), seq=10).status == Ack.OK
    assert client_a.publish_events(frame_events(3), seq=9).stored == 3  # within the window, never seen


@pytest.mark.parametrize("offset_s", [-3600, 3600])
def test_stale_timestamp_is_invalid(bus, client_a, offset_s):
    ack = client_a.publish_events(frame_events(6), seq=1, ts_ns=time.time_ns() + offset_s * SEC)
    assert (ack.status, ack.reason) == (Ack.INVALID, "stale")
    assert bus.accounting.events["dropped:stale"] == 6
    assert_healthy(client_a, seq=1)  # the stale one did not use up its number


def forged(kind: str, certs_dir) -> Envelope:
    key_a = certs.load_agent_credentials(certs_dir, "a").signing_key
    key_b = certs.load_agent_credentials(certs_dir, "b").signing_key
    if kind == "signed_by_b":
        return seal(frame_events(4), "a", 1, key_b)
    if kind == "claims_b":
        return seal(frame_events(4), "b", 1, key_b)
    if kind == "tampered":
        envelope = seal(frame_events(4), "a", 1, key_a)
        envelope.payload = envelope.payload[:-1] + bytes([envelope.payload[-1] ^ 1])
        return envelope
    if kind == "garbage":  # a valid signature over bytes that are no EventBatch
        payload = b"\xff\xff\xff\xff"
        return Envelope(agent_id="a", seq=1, ts_ns=time.time_ns(), idempotency_key=idempotency_key("a", 1),
                        payload=payload, signature=key_a.sign(payload))  # fmt: skip
    if kind == "header_mismatch":
        payload = EventBatch(agent_id="a", seq=2, ts_ns=time.time_ns()).SerializeToString()
        return Envelope(agent_id="a", seq=1, ts_ns=time.time_ns(), idempotency_key=idempotency_key("a", 1),
                        payload=payload, signature=key_a.sign(payload))  # fmt: skip
    if kind == "huge_seq":
        return seal(frame_events(4), "a", 2**64 - 1, key_a)
    if kind == "no_idempotency_key":
        envelope = seal(frame_events(4), "a", 1, key_a)
        envelope.idempotency_key = b""
        return envelope
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, status, reason",
    [
        ("signed_by_b", Ack.UNAUTHORIZED, "bad_signature"),
        ("claims_b", Ack.UNAUTHORIZED, "identity_mismatch"),
        ("tampered", Ack.UNAUTHORIZED, "bad_signature"),
        ("garbage", Ack.INVALID, "malformed"),
        ("header_mismatch", Ack.INVALID, "header_mismatch"),
        ("huge_seq", Ack.INVALID, "bad_sequence"),
        ("no_idempotency_key", Ack.INVALID, "bad_idempotency_key"),
    ],
)
def test_forged_envelopes_are_refused_and_counted(bus, client_a, store_path, certs_dir, kind, status, reason):
    ack = client_a.publish(forged(kind, certs_dir))
    assert (ack.status, ack.reason) == (status, reason)
    assert bus.accounting.envelopes == Counter({(STATUS[status], reason): 1})
    assert sql(store_path, "SELECT COUNT(*) FROM envelopes") == [(0,)]
    assert_healthy(client_a, seq=1)  # the refused one did not use up number 1 either


def test_unregistered_key_is_unauthorized_and_new_agents_need_no_restart(bus, certs_dir):
    certs.issue_agent(certs_dir, "late")
    public_key = certs.agent_paths(certs_dir, "late")["public_key"]
    saved = public_key.read_bytes()
    public_key.unlink()
    bus.reload_keys()  # what SIGHUP does
    with BusClient(bus.listening.address, certs_dir, "late") as late:
        ack = late.publish_events(frame_events(3, host_prefix="late"), seq=1)
        assert (ack.status, ack.reason) == (Ack.UNAUTHORIZED, "unknown_key")
        public_key.write_bytes(saved)  # registered now: picked up without a restart or a reload
        assert late.publish_events(frame_events(3, host_prefix="late"), seq=1).stored == 3
    assert bus.accounting.envelopes[("unauthorized", "unknown_key")] == 1


def test_oversized_envelopes_are_counted(store_path, certs_dir):
    limit = 64 * 1024
    with BusServer(store_path, certs_dir, bus_config(max_message_bytes=limit)) as bus, \
            BusClient(bus.listening.address, certs_dir, "a") as client:  # fmt: skip
        for rows in (limit // 25, limit // 8):  # a little over the limit, and over gRPC's own (twice the limit)
            envelope = client.seal(frame_events(rows), seq=1)
            assert envelope.ByteSize() > limit
            ack = client.publish(envelope)
            assert (ack.status, ack.reason) == (Ack.INVALID, "oversized")
        deadline = time.monotonic() + 5  # gRPC answered the second before its handler counted it
        while bus.accounting.envelopes[("invalid", "oversized")] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bus.accounting.envelopes == Counter({("invalid", "oversized"): 2})
        assert sql(store_path, "SELECT COUNT(*) FROM envelopes") == [(0,)]
        assert_healthy(client, seq=1)


def test_overload_answers_retry_with_a_backoff_hint(store_path, certs_dir):
    with BusServer(store_path, certs_dir, bus_config(max_pending_batches=1)) as bus, \
            BusClient(bus.listening.address, certs_dir, "a") as client:  # fmt: skip
        writer_free = threading.Event()
        bus.store.submit_job(lambda conn: writer_free.wait(10))  # the store's writer is busy
        acks = {}
        first = threading.Thread(target=lambda: acks.setdefault(1, client.publish_events(frame_events(5), seq=1)))
        first.start()
        deadline = time.monotonic() + 10
        while bus.intake.pending < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        second = client.seal(frame_events(5), seq=2)
        ack = client.publish(second)
        assert (ack.status, ack.reason, ack.seq) == (Ack.RETRY, "overloaded", 2)
        assert 10 <= ack.retry_after_ms <= 5000
        writer_free.set()
        first.join(10)
        assert acks[1].stored == 5
        assert client.publish(second).stored == 5  # the resend after the backoff is taken
        assert bus.accounting.envelopes[("retry", "overloaded")] == 1
        assert "dropped:overloaded" not in bus.accounting.events  # RETRY is not an event's final outcome


def test_every_event_has_one_outcome_and_the_counts_persist(store_path, certs_dir):
    with BusServer(store_path, certs_dir, bus_config()) as bus, \
            BusClient(bus.listening.address, certs_dir, "a") as client:  # fmt: skip
        good = client.seal(frame_events(10), seq=1)
        client.publish(good)
        client.publish(good)  # 10 duplicate
        client.publish_events(frame_events(3) + frame_events(2, names=["cpu_user_pct", "bogus_metric"]), seq=2)
        client.publish_events(frame_events(4), seq=3, ts_ns=time.time_ns() - 3600 * SEC)  # 4 dropped:stale
        client.publish(forged("tampered", certs_dir))  # an envelope, no events
        live_envelopes, live_events = Counter(bus.accounting.envelopes), Counter(bus.accounting.events)
    assert live_events == Counter({"stored": 13, "duplicate": 10, "rejected:unknown_metric": 2, "dropped:stale": 4})
    assert sum(live_envelopes.values()) == 5
    envelopes = dict(sql(store_path, "SELECT status || ':' || reason, envelopes FROM bus_envelopes"))
    assert envelopes == {"ok:": 3, "invalid:stale": 1, "unauthorized:bad_signature": 1}
    assert dict(sql(store_path, "SELECT outcome, events FROM ingest_outcomes")) == dict(live_events)
