"""Writes prepared events into the store, inside the writer's transaction.

Checks that need the store's state happen here: a resent envelope (same idempotency
key) is a duplicate as a whole; a metric snapshot not newer than the newest stored for
its host and agent is a duplicate if that exact snapshot exists, else rejected as
``out_of_order``. Snapshots are taken in time order per host, so a batch need not be
sorted.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from itertools import chain, repeat

import numpy as np

from amoskys.store.outcomes import WriteResult
from amoskys.store.prepare import PreparedWrite
from amoskys.store.state import WriterState
from amoskys.telemetry.telemetry_pb2 import Envelope
from amoskys.telemetry.validate import Problem

_INSERT_SNAPSHOT = "INSERT INTO host_metrics(host_id, ts_ns, agent_id, metric_set_id, vals, envelope_id)"
_INSERT_FLOW = (
    "INSERT INTO flows(host_id, agent_id, envelope_id, ts_ns, src_ip, src_port, dst_ip, dst_port, "
    "protocol, bytes_sent, bytes_received, packets_sent, packets_received, duration_ns, state)"
)
_INSERT_PROCESS = (
    "INSERT INTO process_events(host_id, agent_id, envelope_id, ts_ns, kind, pid, ppid, name, exe, username, exit_code)"
)
ROWS_PER_STATEMENT = 500  # 15 columns x 500 stays far below SQLite's 32766 parameters


def commit_prepared(
    conn: sqlite3.Connection,
    state: WriterState,
    prepared: PreparedWrite,
    *,
    data_source: str,
    envelope: Envelope | None,
    now_ns: int,
) -> WriteResult:
    """Insert a prepared write; runs inside an open transaction."""
    agent_id = state.agent_id(conn, prepared.agent, data_source)
    envelope_id = None
    if envelope is not None:
        envelope_id = _insert_envelope(conn, envelope, prepared.checksum, agent_id, now_ns)
        if envelope_id is None:
            result = WriteResult()
            result.count("duplicate", prepared.events)
            state.unsaved_outcomes.update(result.outcomes)
            return result
    result = prepared.result.copy()  # the job may run twice (see ``writer``): prepared stays as it was
    batches = (
        (_INSERT_SNAPSHOT, _snapshot_rows(conn, state, prepared, result, agent_id, envelope_id)),
        (_INSERT_FLOW, _record_rows(conn, state, prepared.flows, agent_id, envelope_id)),
        (_INSERT_PROCESS, _record_rows(conn, state, prepared.processes, agent_id, envelope_id)),
    )
    for insert, rows in batches:
        if rows:
            stored = insert_new_rows(conn, insert, rows)
            result.count("stored", stored)
            result.count("duplicate", len(rows) - stored)
    state.unsaved_outcomes.update(result.outcomes)
    return result


def insert_new_rows(conn: sqlite3.Connection, insert: str, rows: list[tuple]) -> int:
    """Run ``insert`` (an INSERT up to its column list) for rows, skipping rows whose key
    is stored already; returns how many were inserted.

    Many rows go in one statement: SQLite's work per statement, not per row, is most of
    a write's cost, and this takes over a third off it.
    """
    inserted = 0
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        sql = _multi_row_insert(insert, len(chunk[0]), len(chunk))
        inserted += conn.execute(sql, tuple(chain.from_iterable(chunk))).rowcount
    return inserted


@lru_cache(maxsize=256)
def _multi_row_insert(insert: str, width: int, rows: int) -> str:
    row = "(" + ",".join("?" * width) + ")"
    return f"{insert} VALUES {','.join([row] * rows)} ON CONFLICT DO NOTHING"


def _snapshot_rows(conn, state: WriterState, prepared: PreparedWrite, result: WriteResult, agent_id: int,
                   envelope_id) -> list[tuple]:  # fmt: skip
    """host_metrics rows for the snapshots newer than what is stored; counts the rest."""
    runs = prepared.snapshots
    if runs is None:
        return []
    lengths = np.diff(runs.starts)
    ids = [state.host_id(conn, name) for name in runs.hosts]
    newest_of_run = np.array([state.newest_ts(conn, host, agent_id) for host in ids])
    host, newest = np.repeat(ids, lengths), np.repeat(newest_of_run, lengths)
    ts, repeated = runs.ts_ns, runs.repeated
    fresh = (ts > newest) & ~repeated
    result.count("duplicate", int(repeated.sum()))
    for i in np.flatnonzero(~fresh & ~repeated).tolist():
        _count_stale(conn, state, int(host[i]), int(ts[i]), agent_id, result)
    last = ts[runs.starts[1:] - 1]  # each host's newest row
    for i in np.flatnonzero(last > newest_of_run).tolist():
        state.set_newest_ts(ids[i], agent_id, int(last[i]))
    set_ids = np.array([state.metric_set_id(conn, names) for names in runs.sets])[runs.set_of_row]
    kept = np.flatnonzero(fresh)
    return list(
        zip(
            host[kept].tolist(), ts[kept].tolist(), repeat(agent_id), set_ids[kept].tolist(),
            [runs.packed[i] for i in kept.tolist()], repeat(envelope_id),
        )
    )  # fmt: skip


def _count_stale(conn, state: WriterState, host_id: int, ts_ns: int, agent_id: int, result: WriteResult) -> None:
    exists = conn.execute(
        "SELECT 1 FROM host_metrics WHERE host_id = ? AND ts_ns = ? AND agent_id = ?", (host_id, ts_ns, agent_id)
    ).fetchone()
    if exists:
        result.count("duplicate", 1)
    else:
        host = state.host_name(host_id)
        result.reject(Problem("out_of_order", f"host {host}: snapshot at {ts_ns} is older than one already stored"))


def _record_rows(conn, state: WriterState, records: list[tuple[str, tuple]], agent_id: int, envelope_id) -> list[tuple]:
    return [(state.host_id(conn, host), agent_id, envelope_id, *row) for host, row in records]


def _insert_envelope(conn: sqlite3.Connection, envelope: Envelope, checksum: bytes, agent_id: int,
                     now_ns: int) -> int | None:  # fmt: skip
    """The new envelope's row id, or None when its idempotency key is already stored."""
    cursor = conn.execute(
        "INSERT INTO envelopes(idempotency_key, agent_id, seq, ts_ns, received_ns, payload, signature, checksum) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            envelope.idempotency_key,
            agent_id,
            envelope.seq,
            envelope.ts_ns,
            now_ns,
            envelope.payload,
            envelope.signature,
            checksum,
        ),
    )
    return cursor.lastrowid if cursor.rowcount else None


def before_commit(conn: sqlite3.Connection, state: WriterState) -> None:
    """Write what the transaction's jobs left in state: summed outcome counts and newest snapshot times.

    Once per transaction rather than once per job: few statements, each a wait for the GIL under load.
    """
    if state.unsaved_outcomes:
        conn.executemany(
            "INSERT INTO ingest_outcomes(outcome, events) VALUES (?, ?) "
            "ON CONFLICT(outcome) DO UPDATE SET events = events + excluded.events",
            list(state.unsaved_outcomes.items()),
        )
    newest = [(host, agent, ts_ns) for (host, agent), ts_ns in state.unsaved_newest.items()]
    for start in range(0, len(newest), ROWS_PER_STATEMENT):
        chunk = newest[start : start + ROWS_PER_STATEMENT]
        conn.execute(
            "INSERT INTO newest_snapshots(host_id, agent_id, ts_ns) VALUES " + ", ".join(["(?, ?, ?)"] * len(chunk))
            + " ON CONFLICT DO UPDATE SET ts_ns = excluded.ts_ns",
            tuple(chain.from_iterable(chunk)),
        )  # fmt: skip
    state.unsaved_outcomes.clear()
    state.unsaved_newest.clear()
