"""The outbox on real SQLite files: order, durability across a killed process, bounds, sequence numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from amoskys.agents.outbox import Outbox
from amoskys.errors import ConfigError
from amoskys.telemetry.telemetry_pb2 import Envelope


def envelope(payload: bytes = b"x" * 100):
    return lambda seq: Envelope(agent_id="a", seq=seq, ts_ns=seq, payload=payload)


def test_append_peek_delete_keep_order(tmp_path):
    with Outbox.open(tmp_path / "o.db") as box:
        sealed = [box.append(envelope(bytes([i]) * 10), events=i + 1) for i in range(5)]
        queued = box.peek(10)
        assert [q.envelope for q in queued] == sealed
        assert [q.events for q in queued] == [1, 2, 3, 4, 5]
        assert [s.seq for s in sealed] == sorted(set(s.seq for s in sealed))
        box.delete(queued[0].id)
        box.delete(queued[2].id)
        assert [q.envelope.seq for q in box.peek(2)] == [sealed[1].seq, sealed[3].seq]
        assert len(box) == 3 and box.size_bytes == sum(q.size for q in box.peek(10))


def test_appended_envelopes_survive_a_killed_process(tmp_path):
    path = tmp_path / "o.db"
    script = textwrap.dedent(f"""
        import os, signal
        from amoskys.agents.outbox import Outbox
        from amoskys.telemetry.telemetry_pb2 import Envelope
        box = Outbox.open({str(path)!r})
        for i in range(5):
            box.append(lambda seq: Envelope(agent_id="a", seq=seq, payload=bytes([i]) * 50), events=1)
        print(box.next_seq(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no cleanup
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9, done.stderr
    next_seq = int(done.stdout)
    with Outbox.open(path) as box:  # the dead process's lock is gone with it
        queued = box.peek(10)
        assert [q.envelope.payload for q in queued] == [bytes([i]) * 50 for i in range(5)]
        assert [q.envelope.seq for q in queued] == list(range(next_seq - 5, next_seq))
        assert box.next_seq() == next_seq


def test_sequence_numbers_keep_increasing_across_reopen_even_when_emptied(tmp_path):
    path = tmp_path / "o.db"
    with Outbox.open(path) as box:
        first = box.append(envelope(), events=1).seq
        assert first > 1_700_000_000_000_000  # a fresh outbox starts at the time in microseconds
        for queued in box.peek(10):
            box.delete(queued.id)
    with Outbox.open(path) as box:
        assert len(box) == 0
        assert box.append(envelope(), events=1).seq == first + 1


def test_a_deleted_outbox_still_starts_above_the_old_numbers(tmp_path):
    with Outbox.open(tmp_path / "one.db") as box:
        old = box.append(envelope(), events=1).seq
    with Outbox.open(tmp_path / "two.db") as box:
        assert box.append(envelope(), events=1).seq > old


def test_a_full_outbox_drops_the_oldest_and_counts_them(tmp_path):
    with Outbox.open(tmp_path / "o.db", max_bytes=1000) as box:
        sealed = [box.append(envelope(bytes([i]) * 200), events=3) for i in range(10)]
        kept = box.peek(100)
        assert box.size_bytes <= 1000 and len(kept) == len(box) < 10
        assert [q.envelope for q in kept] == sealed[-len(kept):]  # the newest are kept, in order
        dropped = 10 - len(kept)
        assert box.counters() == {"dropped_outbox_full": 3 * dropped, "dropped_outbox_full_envelopes": dropped}
    with Outbox.open(tmp_path / "o.db", max_bytes=1000) as box:
        assert box.counters()["dropped_outbox_full"] == 3 * dropped  # persisted


def test_an_envelope_larger_than_the_outbox_is_dropped_alone(tmp_path):
    with Outbox.open(tmp_path / "o.db", max_bytes=1000) as box:
        box.append(envelope(b"s" * 100), events=1)
        box.append(envelope(b"L" * 5000), events=7)
        assert [q.envelope.payload for q in box.peek(10)] == [b"s" * 100]
        assert box.counters()["dropped_outbox_full"] == 7


def test_reseal_all_keeps_order_with_fresh_increasing_numbers(tmp_path):
    with Outbox.open(tmp_path / "o.db") as box:
        for i in range(4):
            box.append(envelope(bytes([i])), events=1)
        before = box.peek(10)
        resealed = box.reseal_all(lambda old, seq: Envelope(agent_id="a", seq=seq, payload=old.payload + b"!"))
        after = box.peek(10)
        assert resealed == 4
        assert [q.envelope.payload for q in after] == [q.envelope.payload + b"!" for q in before]
        seqs = [q.envelope.seq for q in after]
        assert seqs == sorted(seqs) and seqs[0] > before[-1].envelope.seq
        assert box.next_seq() == seqs[-1] + 1 and box.size_bytes == sum(q.size for q in after)


def test_one_process_per_outbox(tmp_path):
    with Outbox.open(tmp_path / "o.db"):
        with pytest.raises(ConfigError, match="in use by another agent"):
            Outbox.open(tmp_path / "o.db")
    Outbox.open(tmp_path / "o.db").close()


def test_a_failed_seal_leaves_the_outbox_as_it_was(tmp_path):
    with Outbox.open(tmp_path / "o.db") as box:
        box.append(envelope(), events=1)
        seq, size = box.next_seq(), box.size_bytes

        def broken(seq):
            raise ValueError("no key")

        with pytest.raises(ValueError):
            box.append(broken, events=1)
        assert (box.next_seq(), box.size_bytes, len(box)) == (seq, size, 1)
