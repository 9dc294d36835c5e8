"""The store's tables, its schema version and the migrations between versions.

The file is marked with an application id so that a foreign SQLite database is never
mistaken for a store; ``PRAGMA user_version`` holds the schema version. Each
migration runs in the same transaction as the version bump, so a crash mid-migration
leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from amoskys.errors import StoreError

APPLICATION_ID = 0x414D4F53  # "AMOS"
SQLITE_MAGIC = b"SQLite format 3\x00"

_V1_TELEMETRY = """
CREATE TABLE hosts (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
-- data_source: 'real' for agents, 'simulated' for the simulator.
CREATE TABLE agents (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    data_source TEXT NOT NULL CHECK (data_source IN ('real', 'simulated'))
);
-- The ordered metric names of a snapshot; most snapshots of an agent share one set.
CREATE TABLE metric_sets (
    id    INTEGER PRIMARY KEY,
    names TEXT NOT NULL UNIQUE  -- JSON array
);
-- Signed envelopes exactly as received; checksum = sha256(payload).
CREATE TABLE envelopes (
    id              INTEGER PRIMARY KEY,
    idempotency_key BLOB NOT NULL UNIQUE,
    agent_id        INTEGER NOT NULL REFERENCES agents(id),
    seq             INTEGER NOT NULL,
    ts_ns           INTEGER NOT NULL,
    received_ns     INTEGER NOT NULL,
    payload         BLOB NOT NULL,
    signature       BLOB NOT NULL,
    checksum        BLOB NOT NULL
);
-- One row per snapshot; vals holds little-endian float64 in metric_sets order.
CREATE TABLE host_metrics (
    id            INTEGER PRIMARY KEY,
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    ts_ns         INTEGER NOT NULL,
    agent_id      INTEGER NOT NULL REFERENCES agents(id),
    metric_set_id INTEGER NOT NULL REFERENCES metric_sets(id),
    vals          BLOB NOT NULL,
    envelope_id   INTEGER REFERENCES envelopes(id)
);
CREATE UNIQUE INDEX host_metrics_by_host_time ON host_metrics(host_id, ts_ns, agent_id);
CREATE TABLE flows (
    id               INTEGER PRIMARY KEY,
    host_id          INTEGER NOT NULL REFERENCES hosts(id),
    ts_ns            INTEGER NOT NULL,
    agent_id         INTEGER NOT NULL REFERENCES agents(id),
    src_ip           TEXT NOT NULL,
    src_port         INTEGER NOT NULL,
    dst_ip           TEXT NOT NULL,
    dst_port         INTEGER NOT NULL,
    protocol         TEXT NOT NULL,
    bytes_sent       INTEGER NOT NULL,
    bytes_received   INTEGER NOT NULL,
    packets_sent     INTEGER NOT NULL,
    packets_received INTEGER NOT NULL,
    duration_ns      INTEGER NOT NULL,
    state            TEXT NOT NULL,
    envelope_id      INTEGER REFERENCES envelopes(id),
    UNIQUE (host_id, ts_ns, agent_id, protocol, src_ip, src_port, dst_ip, dst_port)
);
CREATE TABLE process_events (
    id          INTEGER PRIMARY KEY,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    ts_ns       INTEGER NOT NULL,
    agent_id    INTEGER NOT NULL REFERENCES agents(id),
    kind        TEXT NOT NULL CHECK (kind IN ('start', 'exit')),
    pid         INTEGER NOT NULL,
    ppid        INTEGER NOT NULL,
    name        TEXT NOT NULL,
    exe         TEXT NOT NULL,
    username    TEXT NOT NULL,
    exit_code   INTEGER NOT NULL,
    envelope_id INTEGER REFERENCES envelopes(id),
    UNIQUE (host_id, ts_ns, agent_id, pid, kind)
);
-- Ground truth: labeled incident windows [start_ns, end_ns) from the simulator or a
-- replayed attack scenario.
CREATE TABLE incidents (
    id       INTEGER PRIMARY KEY,
    host_id  INTEGER NOT NULL REFERENCES hosts(id),
    kind     TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns   INTEGER NOT NULL CHECK (end_ns > start_ns),
    source   TEXT NOT NULL,
    UNIQUE (host_id, kind, start_ns, source)
);
-- Every event offered to the store, counted into exactly one outcome:
-- 'stored', 'duplicate' or 'rejected:<reason>'.
CREATE TABLE ingest_outcomes (
    outcome TEXT PRIMARY KEY,
    events  INTEGER NOT NULL
);
"""

_V2_DETECTION = """
-- Every scored row, compactly: details is JSON (contributing models, top features).
CREATE TABLE detections (
    id        INTEGER PRIMARY KEY,
    host_id   INTEGER NOT NULL REFERENCES hosts(id),
    ts_ns     INTEGER NOT NULL,
    model_set TEXT NOT NULL,
    score     REAL NOT NULL CHECK (score BETWEEN 0 AND 100),
    level     TEXT NOT NULL,
    details   TEXT NOT NULL DEFAULT '{}',
    UNIQUE (host_id, ts_ns, model_set)
);
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY,
    host_id    INTEGER NOT NULL REFERENCES hosts(id),
    start_ns   INTEGER NOT NULL,
    end_ns     INTEGER NOT NULL,
    peak_score REAL NOT NULL CHECK (peak_score BETWEEN 0 AND 100),
    level      TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    details    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX alerts_by_host_time ON alerts(host_id, start_ns);
-- Analyst verdicts on alerts: verdict 1 = true positive, 0 = false alarm.
CREATE TABLE feedback (
    id         INTEGER PRIMARY KEY,
    alert_id   INTEGER NOT NULL REFERENCES alerts(id),
    verdict    INTEGER NOT NULL CHECK (verdict IN (0, 1)),
    analyst    TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL
);
CREATE INDEX feedback_by_alert ON feedback(alert_id);
"""

_V3_BUS = """
-- Envelopes the event bus answered, by status (ok, retry, invalid, unauthorized) and
-- reason ('' for ok), so that `amoskys bus stats` works while the bus is down. The
-- events of envelopes it refused are counted in ingest_outcomes as 'dropped:<reason>'.
CREATE TABLE bus_envelopes (
    status    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    envelopes INTEGER NOT NULL,
    PRIMARY KEY (status, reason)
);
-- The bus reads an agent's recent sequence numbers when the agent first shows up.
CREATE INDEX envelopes_by_agent_seq ON envelopes(agent_id, seq);
"""

_V4_TIME_INDEX = """
-- Snapshots are keyed time first: every agent reports about now, so new keys land at the
-- index's end and a commit rewrites a few pages, where a host-first key rewrote a page
-- per host (the bus's commits were mostly index writes). The newest snapshot time per
-- host and agent, which ingest checks each new snapshot against, gets its own table.
CREATE TABLE newest_snapshots (
    host_id  INTEGER NOT NULL REFERENCES hosts(id),
    agent_id INTEGER NOT NULL REFERENCES agents(id),
    ts_ns    INTEGER NOT NULL,
    PRIMARY KEY (host_id, agent_id)
) WITHOUT ROWID;
INSERT INTO newest_snapshots(host_id, agent_id, ts_ns)
    SELECT host_id, agent_id, MAX(ts_ns) FROM host_metrics GROUP BY host_id, agent_id;
DROP INDEX host_metrics_by_host_time;
CREATE UNIQUE INDEX host_metrics_by_time ON host_metrics(ts_ns, host_id, agent_id);
"""

# MIGRATIONS[i] takes a store from version i to version i + 1.
MIGRATIONS: tuple[str, ...] = (_V1_TELEMETRY, _V2_DETECTION, _V3_BUS, _V4_TIME_INDEX)
SCHEMA_VERSION = len(MIGRATIONS)


def check_file(path: Path) -> None:
    """Refuse, before SQLite touches it, anything at path that is not a store or empty."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a store file")
    if not path.exists():
        return
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read store {path}: {exc.strerror}") from None
    if header and header != SQLITE_MAGIC:
        raise StoreError(f"{path} is not an AMOSKYS store (not an SQLite database); refusing to touch it")


def migrate(conn: sqlite3.Connection, path: Path, target: int = SCHEMA_VERSION) -> int:
    """Bring the store at conn up to ``target``; return the version found before."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if app_id != APPLICATION_ID:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if app_id != 0 or tables:
            found = ", ".join(tables[:5]) or "no tables"
            raise StoreError(f"{path} is an SQLite database but not an AMOSKYS store ({found}); refusing to touch it")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {version}, newer than this amoskys knows ({SCHEMA_VERSION}); upgrade amoskys"
        )
    for step in range(version, target):
        # executescript would commit on its own; run the statements one by one
        # inside one explicit transaction instead.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";") if stmt.strip()]
