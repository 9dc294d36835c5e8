"""The durable store: one SQLite file in WAL mode with ``synchronous=FULL``.

One writer thread commits in groups (see ``writer``); any thread may read at the same
time through its own connection, and sees only committed transactions.

>>> import tempfile, pathlib
>>> from amoskys.telemetry.telemetry_pb2 import Event, HostMetrics
>>> path = pathlib.Path(tempfile.mkdtemp()) / "doc.db"
>>> event = Event(metrics=HostMetrics(host_id="web-1", ts_ns=1_767_225_600_000_000_000,
...                                   metrics={"cpu_user_pct": 12.5}))
>>> with Store.open(path) as store:
...     store.write([event], agent="doc-agent").stored
...     store.write([event], agent="doc-agent").duplicate
...     store.snapshots("web-1")[0].metrics
1
1
{'cpu_user_pct': 12.5}
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from amoskys.errors import InputError, StoreError
from amoskys.store import schema
from amoskys.store.checkpoint import Checkpointer
from amoskys.store.ingest import before_commit, commit_prepared
from amoskys.store.outcomes import WriteResult
from amoskys.store.prepare import prepare_events
from amoskys.store.state import WriterState
from amoskys.store.writer import GroupCommitWriter
from amoskys.telemetry.telemetry_pb2 import Envelope, Event
from amoskys.telemetry.validate import DEFAULT_MAX_FUTURE_S
from amoskys.timeutil import NS, now_ns

BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    host: str
    ts_ns: int
    agent: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class IncidentRow:
    host: str
    kind: str
    start_ns: int
    end_ns: int
    source: str


class Store:
    """Open with ``Store.open(path)``; use as a context manager or call ``close()``."""

    def __init__(self, path: Path, writer_conn: sqlite3.Connection, max_future_s: float):
        self.path = path
        self.max_future_ns = int(max_future_s * NS)
        self._state = WriterState()
        self._writer = GroupCommitWriter(writer_conn, on_rollback=self._state.clear,
                                         before_commit=lambda conn: before_commit(conn, self._state))  # fmt: skip
        self._writer_conn = writer_conn
        writer_conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer's thread does it
        self._checkpointer = Checkpointer(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, max_future_s: float = DEFAULT_MAX_FUTURE_S, create: bool = True) -> Store:
        """Open the store at path; create it (and its folder) if there is none and create is set.

        Raises StoreError, and leaves the file untouched, for anything that is not an
        AMOSKYS store: another file type, a foreign SQLite database, a corrupt file, or
        a store written by a newer amoskys.
        """
        path = Path(path).expanduser()
        schema.check_file(path)
        if not create and not path.exists():
            raise StoreError(f"no store at {path}: fill one first, e.g. with `amoskys simulate --store {path}`")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {path.parent}: {exc.strerror}") from None
        # Files SQLite may create; if opening fails, those that were not there go again.
        new_files = [f for f in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))) if not f.exists()]
        conn = None
        try:
            conn = _connect(path)
            schema.migrate(conn, path)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{path}: SQLite would not switch to WAL mode (got {mode!r})")
        except (sqlite3.Error, StoreError) as exc:
            if conn is not None:
                conn.close()
            for created in new_files:
                created.unlink(missing_ok=True)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open store {path}: {exc}") from None
        return cls(path, conn, max_future_s)

    # -- writing -------------------------------------------------------------------

    def submit(
        self,
        events: Iterable[Event],
        *,
        agent: str,
        data_source: str = "real",
        envelope: Envelope | None = None,
    ) -> Future:
        """Queue events for the writer; the future gives a WriteResult once durable.

        Events are checked here, in the caller's thread; what needs the store's state
        (duplicates, ordering) is checked by the writer.
        """
        received_ns = now_ns()
        prepared = prepare_events(events, agent, received_ns, self.max_future_ns)
        if envelope is not None:
            prepared.checksum = hashlib.sha256(envelope.payload).digest()

        def job(conn: sqlite3.Connection) -> WriteResult:
            return commit_prepared(
                conn, self._state, prepared, data_source=data_source, envelope=envelope, now_ns=received_ns
            )

        return self._writer.submit(job)

    def write(self, events: Iterable[Event], **kwargs) -> WriteResult:
        """Store events and return once they are durable; see ``submit``."""
        return self.submit(events, **kwargs).result()

    def write_incidents(self, incidents: Iterable[IncidentRow]) -> int:
        """Store labeled incident windows; returns how many were new."""
        rows = list(incidents)
        for row in rows:
            if row.end_ns <= row.start_ns:
                raise InputError(f"incident {row.kind} on {row.host} ends before it starts")

        def job(conn: sqlite3.Connection) -> int:
            return conn.executemany(
                "INSERT INTO incidents(host_id, kind, start_ns, end_ns, source) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(self._state.host_id(conn, r.host), r.kind, r.start_ns, r.end_ns, r.source) for r in rows],
            ).rowcount

        return self._writer.submit(job).result()

    def run_in_writer(self, job) -> object:
        """Run job(conn) in the writer's next transaction and return its result once committed."""
        return self.submit_job(job).result()

    def submit_job(self, job) -> Future:
        """Queue job(conn) for the writer's next transaction; the future gives its result once committed."""
        return self._writer.submit(job)

    def host_id(self, conn: sqlite3.Connection, host: str) -> int:
        """The id of host, created if new; only for jobs running in the writer."""
        return self._state.host_id(conn, host)

    # -- reading -------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def snapshots(
        self, host: str, since_ns: int | None = None, until_ns: int | None = None, limit: int | None = None
    ) -> list[Snapshot]:
        """The host's metric snapshots with since_ns <= ts_ns < until_ns, oldest first."""
        rows = self.reader().execute(
            "SELECT m.ts_ns, a.name, s.names, m.vals FROM host_metrics m "
            "JOIN hosts h ON h.id = m.host_id JOIN agents a ON a.id = m.agent_id "
            "JOIN metric_sets s ON s.id = m.metric_set_id "
            "WHERE h.name = ? AND m.ts_ns >= ? AND m.ts_ns < ? ORDER BY m.ts_ns, a.name LIMIT ?",
            (host, since_ns or 0, 2**63 - 1 if until_ns is None else until_ns, -1 if limit is None else limit),
        )
        names_cache: dict[str, list[str]] = {}
        result = []
        for ts_ns, agent, names_json, vals in rows:
            names = names_cache.get(names_json) or names_cache.setdefault(names_json, json.loads(names_json))
            values = struct.unpack(f"<{len(names)}d", vals)
            result.append(Snapshot(host, ts_ns, agent, dict(zip(names, values))))
        return result

    def incidents(self, host: str | None = None) -> list[IncidentRow]:
        rows = self.reader().execute(
            "SELECT h.name, i.kind, i.start_ns, i.end_ns, i.source FROM incidents i JOIN hosts h ON h.id = i.host_id "
            "WHERE ? IS NULL OR h.name = ? ORDER BY h.name, i.start_ns",
            (host, host),
        )
        return [IncidentRow(*row) for row in rows]

    def hosts(self) -> list[str]:
        return [row[0] for row in self.reader().execute("SELECT name FROM hosts ORDER BY name")]

    def ingest_outcomes(self) -> dict[str, int]:
        return dict(self.reader().execute("SELECT outcome, events FROM ingest_outcomes ORDER BY outcome"))

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Commit what was submitted, then close every connection."""
        self._writer.close()
        self._checkpointer.close()
        self._writer_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous = FULL")
    return conn
