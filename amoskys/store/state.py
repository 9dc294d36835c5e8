"""What the writer keeps in memory between writes, and what one write needs to know."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from dataclasses import dataclass


class WriterState:
    """Ids and newest snapshot times the writer looks up often, cached in memory.

    Only the writer thread uses it. ``clear()`` after a rolled-back transaction, since
    ids it created may not exist any more.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._hosts: dict[str, int] = {}
        self._agents: dict[str, int] = {}
        self._metric_sets: dict[tuple[str, ...], int] = {}
        self._newest: dict[tuple[int, int], int] = {}
        # What the transaction's jobs left to write once, before its commit (``ingest.before_commit``).
        self.unsaved_outcomes: Counter = Counter()
        self.unsaved_newest: dict[tuple[int, int], int] = {}

    def host_id(self, conn: sqlite3.Connection, name: str) -> int:
        host = self._hosts.get(name)
        if host is None:
            conn.execute("INSERT INTO hosts(name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
            host = conn.execute("SELECT id FROM hosts WHERE name = ?", (name,)).fetchone()[0]
            self._hosts[name] = host
        return host

    def host_name(self, host_id: int) -> str:
        return next(name for name, known in self._hosts.items() if known == host_id)

    def agent_id(self, conn: sqlite3.Connection, name: str, data_source: str) -> int:
        agent = self._agents.get(name)
        if agent is None:
            conn.execute("INSERT INTO agents(name, data_source) VALUES (?, ?) ON CONFLICT DO NOTHING", (name, data_source))
            agent = conn.execute("SELECT id FROM agents WHERE name = ?", (name,)).fetchone()[0]
            self._agents[name] = agent
        return agent

    def metric_set_id(self, conn: sqlite3.Connection, names: tuple[str, ...]) -> int:
        set_id = self._metric_sets.get(names)
        if set_id is None:
            text = json.dumps(names, separators=(",", ":"))
            conn.execute("INSERT INTO metric_sets(names) VALUES (?) ON CONFLICT DO NOTHING", (text,))
            set_id = conn.execute("SELECT id FROM metric_sets WHERE names = ?", (text,)).fetchone()[0]
            self._metric_sets[names] = set_id
        return set_id

    def newest_ts(self, conn: sqlite3.Connection, host: int, agent: int) -> int:
        """The newest snapshot time stored for host from agent (0 if none)."""
        key = (host, agent)
        newest = self._newest.get(key)
        if newest is None:
            row = conn.execute("SELECT ts_ns FROM newest_snapshots WHERE host_id = ? AND agent_id = ?", key).fetchone()
            newest = self._newest[key] = row[0] if row is not None else 0
        return newest

    def set_newest_ts(self, host: int, agent: int, ts_ns: int) -> None:
        self._newest[(host, agent)] = self.unsaved_newest[(host, agent)] = ts_ns


@dataclass(frozen=True)
class WriteContext:
    """What every check of one write needs to know."""

    conn: sqlite3.Connection
    state: WriterState
    agent: str
    agent_id: int
    envelope_id: int | None
    now_ns: int
    max_future_ns: int
