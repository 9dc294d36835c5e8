"""The agent's durable outbox: sealed envelopes waiting for the bus, in one SQLite file.

An envelope is sealed once, when it is appended, and stored as its wire bytes; a
resend after a lost ack therefore carries the same sequence number and idempotency
key, and the bus counts it a duplicate instead of storing its events twice. The
outbox also keeps the agent's next sequence number, in the same transaction as the
append, so sequence numbers keep increasing across restarts and crashes.

- WAL with ``synchronous=FULL``: an append that returned survives a crash or power cut.
- Bounded by ``max_bytes``: when an append would go over, the oldest envelopes are
  dropped and their events counted under the persisted counter ``dropped_outbox_full``
  (the envelopes under ``dropped_outbox_full_envelopes``).
- A fresh outbox starts its sequence numbers at the current time in microseconds, so
  an agent whose outbox was deleted still sends numbers above those it sent before
  (as long as it sealed fewer than a million envelopes a second).
- One process per outbox: a second ``Outbox.open`` of the same file fails with a
  ConfigError (two agents of the same name would reuse sequence numbers).

>>> import tempfile, pathlib
>>> from amoskys.telemetry.telemetry_pb2 import Envelope
>>> with Outbox.open(pathlib.Path(tempfile.mkdtemp()) / "doc.db") as box:
...     first = box.append(lambda seq: Envelope(agent_id="a", seq=seq, payload=b"x"), events=1)
...     [item.envelope.seq for item in box.peek(10)] == [first.seq]
True
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amoskys.errors import ConfigError, StoreError
from amoskys.telemetry.telemetry_pb2 import Envelope

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,  -- queue order
    seq    INTEGER NOT NULL,
    events INTEGER NOT NULL,
    size   INTEGER NOT NULL,
    body   BLOB NOT NULL                       -- the serialized Envelope, exactly as sent
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
NEXT_SEQ = "next_seq"
DROPPED_EVENTS = "dropped_outbox_full"
DROPPED_ENVELOPES = "dropped_outbox_full_envelopes"


@dataclass(frozen=True)
class Queued:
    """One envelope waiting in the outbox."""

    id: int
    envelope: Envelope
    events: int
    size: int


class Outbox:
    """Open with ``Outbox.open(path, max_bytes)``; thread-safe (one lock around one connection)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_file, max_bytes: int):
        self.path = path
        self.max_bytes = max_bytes
        self._conn = conn
        self._lock_file = lock_file
        self._lock = threading.Lock()
        self._bytes, self._count = self._totals()

    @classmethod
    def open(cls, path: str | Path, max_bytes: int = 64 * 2**20) -> Outbox:
        path = Path(path).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = open(path.with_name(path.name + ".lock"), "a")
        except OSError as exc:
            raise ConfigError(f"cannot create the outbox {path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise ConfigError(f"outbox {path} is in use by another agent process (give this one another --name)") from None
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO counters VALUES (?, ?)", (NEXT_SEQ, time.time_ns() // 1000))
        except sqlite3.Error as exc:
            lock_file.close()
            raise StoreError(f"cannot open the outbox {path}: {exc}") from None
        return cls(path, conn, lock_file, max_bytes)

    # -- writing ---------------------------------------------------------------------

    def append(self, seal: Callable[[int], Envelope], events: int) -> Envelope:
        """Seal an envelope with the next sequence number (``seal(seq)``) and queue it, durably.

        The sequence number is taken and the envelope stored in one transaction. If the
        outbox would exceed max_bytes, the oldest envelopes are dropped (and counted) first.
        """
        with self._lock, self._transaction():
            seq = self._counter(NEXT_SEQ)
            envelope = seal(seq)
            body = envelope.SerializeToString()
            self._set(NEXT_SEQ, seq + 1)
            if len(body) > self.max_bytes:  # could never fit: dropped as the oldest would be
                self._add(DROPPED_EVENTS, events)
                self._add(DROPPED_ENVELOPES, 1)
                return envelope
            self._make_room(len(body))
            self._conn.execute("INSERT INTO envelopes(seq, events, size, body) VALUES (?, ?, ?, ?)",
                               (seq, events, len(body), body))  # fmt: skip
            self._bytes += len(body)
            self._count += 1
            return envelope

    def delete(self, queued_id: int) -> None:
        """Forget an envelope the bus has answered for good (stored, or refused for ever)."""
        with self._lock, self._transaction():
            row = self._conn.execute("DELETE FROM envelopes WHERE id = ? RETURNING size", (queued_id,)).fetchone()
            if row is not None:
                self._bytes -= row[0]
                self._count -= 1

    def reseal_all(self, seal: Callable[[Envelope, int], Envelope]) -> int:
        """Replace every queued envelope by ``seal(old, new_seq)``, in queue order, with fresh
        sequence numbers; returns how many. For a backlog the bus calls stale: the same
        events in new envelopes that keep the queue's order and increasing numbers."""
        with self._lock, self._transaction():
            rows = self._conn.execute("SELECT id, body FROM envelopes ORDER BY id").fetchall()
            seq = self._counter(NEXT_SEQ)
            for queued_id, body in rows:
                envelope = seal(Envelope.FromString(body), seq)
                new_body = envelope.SerializeToString()
                self._conn.execute("UPDATE envelopes SET seq = ?, size = ?, body = ? WHERE id = ?",
                                   (seq, len(new_body), new_body, queued_id))  # fmt: skip
                self._bytes += len(new_body) - len(body)
                seq += 1
            self._set(NEXT_SEQ, seq)
            return len(rows)

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a persisted counter (e.g. ``rejected:<reason>``)."""
        with self._lock, self._transaction():
            self._add(name, amount)

    # -- reading ---------------------------------------------------------------------

    def peek(self, limit: int) -> list[Queued]:
        """The oldest queued envelopes, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, events, size, body FROM envelopes ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [Queued(i, Envelope.FromString(body), events, size) for i, events, size, body in rows]

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._count

    def next_seq(self) -> int:
        with self._lock:
            return self._counter(NEXT_SEQ)

    def counters(self) -> dict[str, int]:
        """Every persisted counter but the sequence number."""
        with self._lock:
            rows = self._conn.execute("SELECT name, value FROM counters WHERE name != ? ORDER BY name", (NEXT_SEQ,))
            return dict(rows.fetchall())

    # -- internals -------------------------------------------------------------------

    def _make_room(self, incoming: int) -> None:
        while self._count and self._bytes + incoming > self.max_bytes:
            oldest = self._conn.execute(
                "DELETE FROM envelopes WHERE id = (SELECT MIN(id) FROM envelopes) RETURNING size, events"
            ).fetchone()
            self._bytes -= oldest[0]
            self._count -= 1
            self._add(DROPPED_EVENTS, oldest[1])
            self._add(DROPPED_ENVELOPES, 1)

    def _counter(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else row[0]

    def _set(self, name: str, value: int) -> None:
        self._conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                           (name, value, value))  # fmt: skip

    def _add(self, name: str, amount: int) -> None:
        self._conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
                           (name, amount, amount))  # fmt: skip

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT; on an error ROLLBACK, and the in-memory totals read again."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            self._bytes, self._count = self._totals()
            raise
        self._conn.execute("COMMIT")

    def _totals(self) -> tuple[int, int]:
        return self._conn.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM envelopes").fetchone()

    # -- lifetime --------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._lock_file.close()  # releases the flock

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

