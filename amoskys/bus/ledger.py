"""What the bus reads from and writes to the store besides events.

Reads go through the store's per-thread read connections (they see committed data
only); writes are jobs in the store's writer, so they share its group commits.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass

from amoskys.store import Store


@dataclass(frozen=True)
class StoredEnvelope:
    position: int  # the envelopes table's row id: increases with every commit
    agent: str
    payload: bytes  # the serialized EventBatch, exactly as signed


def recent_envelopes(store: Store, agent: str, window: int) -> list[tuple[int, bytes]]:
    """(seq, idempotency key) of agent's envelopes whose seq is within window of its highest."""
    return store.reader().execute(
        "SELECT e.seq, e.idempotency_key FROM envelopes e JOIN agents a ON a.id = e.agent_id "
        "WHERE a.name = ? AND e.seq > (SELECT MAX(seq) FROM envelopes WHERE agent_id = a.id) - ?",
        (agent, window),
    ).fetchall()


def is_stored(store: Store, idempotency_key: bytes) -> bool:
    row = store.reader().execute("SELECT 1 FROM envelopes WHERE idempotency_key = ?", (idempotency_key,)).fetchone()
    return row is not None


def last_position(store: Store) -> int:
    return store.reader().execute("SELECT COALESCE(MAX(id), 0) FROM envelopes").fetchone()[0]


def envelopes_after(store: Store, position: int, limit: int) -> list[StoredEnvelope]:
    """Stored envelopes with a position above position, oldest first."""
    rows = store.reader().execute(
        "SELECT e.id, a.name, e.payload FROM envelopes e JOIN agents a ON a.id = e.agent_id "
        "WHERE e.id > ? ORDER BY e.id LIMIT ?",
        (position, limit),
    )
    return [StoredEnvelope(*row) for row in rows]


def stored_events(store: Store) -> int:
    row = store.reader().execute("SELECT events FROM ingest_outcomes WHERE outcome = 'stored'").fetchone()
    return row[0] if row else 0


def add_counts(conn: sqlite3.Connection, envelopes: Counter, events: Counter) -> None:
    """Add envelope counts {(status, reason): n} and event counts {outcome: n}; runs in the writer."""
    conn.executemany(
        "INSERT INTO bus_envelopes(status, reason, envelopes) VALUES (?, ?, ?) "
        "ON CONFLICT(status, reason) DO UPDATE SET envelopes = envelopes + excluded.envelopes",
        [(status, reason, n) for (status, reason), n in envelopes.items() if n],
    )
    conn.executemany(
        "INSERT INTO ingest_outcomes(outcome, events) VALUES (?, ?) "
        "ON CONFLICT(outcome) DO UPDATE SET events = events + excluded.events",
        [(outcome, n) for outcome, n in events.items() if n],
    )


def persisted_counts(store: Store) -> dict:
    """The counters as persisted: events by outcome and envelopes by status and reason."""
    db = store.reader()
    envelopes: dict[str, dict[str, int]] = {}
    for status, reason, n in db.execute("SELECT status, reason, envelopes FROM bus_envelopes ORDER BY status, reason"):
        envelopes.setdefault(status, {})[reason] = n
    return {
        "events": store.ingest_outcomes(),
        "envelopes": envelopes,
        "stored_envelopes": db.execute("SELECT COUNT(*) FROM envelopes").fetchone()[0],
        "agents": dict(db.execute(
            "SELECT a.name, MAX(e.seq) FROM envelopes e JOIN agents a ON a.id = e.agent_id "
            "GROUP BY a.name ORDER BY a.name"
        )),
    }  # fmt: skip
