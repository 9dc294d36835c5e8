"""Subscribe: stored envelopes from a position on, then each new commit as it lands.

A subscriber reads the envelopes table (a position is an envelope's row id, so it
only grows, and a reader sees committed rows only), sends what it found, and when it
has caught up waits on a condition that publishers notify after each commit: no
polling. Each batch is sent as the payload bytes stored at publish time, wrapped in a
``StoredBatch`` by hand (an embedded message is a length-delimited field, so the
signed bytes go out as they are, with no parse and re-serialize per subscriber).

>>> from amoskys.bus.bus_pb2 import StoredBatch
>>> from amoskys.telemetry.telemetry_pb2 import EventBatch
>>> payload = EventBatch(agent_id="a", seq=3).SerializeToString()
>>> message = StoredBatch.FromString(encode_stored_batch(7, "a", payload))
>>> (message.position, message.agent_id, message.batch.seq)
(7, 'a', 3)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from amoskys.bus import ledger
from amoskys.bus.bus_pb2 import StoredBatch
from amoskys.store import Store

ROWS_PER_READ = 64
WAKE_EVERY_S = 5.0  # a waiting subscriber also wakes this often (a safety net: leaving wakes it at once)
_BATCH_FIELD_KEY = bytes([(3 << 3) | 2])  # StoredBatch.batch: field 3, wire type 2 (length-delimited)


class CommitFeed:
    """A commit counter publishers bump and subscribers wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._version = 0
        self.closed = False

    def notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def wait(self, seen_version: int, active: Callable[[], bool], timeout_s: float = WAKE_EVERY_S) -> None:
        """Return once there was a commit after seen_version, the feed closed, active() turned false
        (``wake()`` says when), or timeout_s passed."""
        with self._changed:
            self._changed.wait_for(lambda: self._version != seen_version or self.closed or not active(), timeout_s)

    def wake(self) -> None:
        """Have every waiting subscriber look at its predicate again (one of them left)."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()


def stored_batches(store: Store, feed: CommitFeed, after_position: int, active: Callable[[], bool]) -> Iterator[bytes]:
    """Serialized StoredBatch messages after after_position, following new commits while active()."""
    position = max(0, after_position)
    while active() and not feed.closed:
        version = feed.version  # before reading: a commit landing in between is seen next round
        rows = ledger.envelopes_after(store, position, ROWS_PER_READ)
        for row in rows:
            yield encode_stored_batch(row.position, row.agent, row.payload)
            position = row.position
        if not rows:
            feed.wait(version, active)


def encode_stored_batch(position: int, agent: str, payload: bytes) -> bytes:
    """A serialized StoredBatch whose batch field holds payload (a serialized EventBatch) as is."""
    header = StoredBatch(position=position, agent_id=agent).SerializeToString()
    return header + _BATCH_FIELD_KEY + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
