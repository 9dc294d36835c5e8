"""Schema migrations: a version-1 store is upgraded in place, and a failed step changes nothing."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.store import IncidentRow, Snapshot, Store, schema
from amoskys.store.alerts import Alert, Detection, add_feedback, read_alerts, read_detections, read_feedback, save_alert
from amoskys.store.alerts import write_detections

from .conftest import SEC, T0, snapshot, sql

V2_TABLES = {"detections", "alerts", "feedback"}


def tables(path: Path) -> set[str]:
    return {row[0] for row in sql(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def make_v1_store(path: Path) -> None:
    """A version-1 store, as an older amoskys left it, holding two snapshots, an incident and outcomes."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert schema.migrate(conn, path, target=1) == 0
        conn.execute("BEGIN")
        conn.execute("INSERT INTO hosts(id, name) VALUES (1, 'legacy-1')")
        conn.execute("INSERT INTO agents(id, name, data_source) VALUES (1, 'agent-v1', 'real')")
        conn.execute("""INSERT INTO metric_sets(id, names) VALUES (1, '["cpu_user_pct","mem_used_bytes"]')""")
        conn.executemany(
            "INSERT INTO host_metrics(host_id, ts_ns, agent_id, metric_set_id, vals) VALUES (1, ?, 1, 1, ?)",
            [(T0, struct.pack("<2d", 12.5, 1024.0)), (T0 + SEC, struct.pack("<2d", 13.5, 2048.0))],
        )
        conn.execute(
            "INSERT INTO incidents(host_id, kind, start_ns, end_ns, source) VALUES (1, 'port_scan', ?, ?, 'simulator')",
            (T0, T0 + 60 * SEC),
        )
        conn.execute("INSERT INTO ingest_outcomes(outcome, events) VALUES ('stored', 2), ('rejected:bad_value', 1)")
        conn.execute("COMMIT")
    finally:
        conn.close()


V1_SNAPSHOTS = [
    Snapshot("legacy-1", T0, "agent-v1", {"cpu_user_pct": 12.5, "mem_used_bytes": 1024.0}),
    Snapshot("legacy-1", T0 + SEC, "agent-v1", {"cpu_user_pct": 13.5, "mem_used_bytes": 2048.0}),
]


def test_v1_store_as_built(tmp_path):
    path = tmp_path / "v1.db"
    make_v1_store(path)
    assert sql(path, "PRAGMA user_version") == [(1,)]
    assert sql(path, "PRAGMA application_id") == [(schema.APPLICATION_ID,)]
    assert not tables(path) & V2_TABLES
    assert {"hosts", "agents", "host_metrics", "envelopes", "ingest_outcomes"} <= tables(path)


def test_open_upgrades_v1_and_keeps_its_data(tmp_path):
    path = tmp_path / "v1.db"
    make_v1_store(path)

    with Store.open(path) as store:
        assert store.snapshots("legacy-1") == V1_SNAPSHOTS
        assert store.incidents() == [IncidentRow("legacy-1", "port_scan", T0, T0 + 60 * SEC, "simulator")]
        assert store.ingest_outcomes() == {"stored": 2, "rejected:bad_value": 1}

        # the writer knows the v1 rows: same time is a duplicate, older is out of order
        result = store.write(
            [snapshot("legacy-1", T0 + SEC, cpu_user_pct=1.0), snapshot("legacy-1", T0 + SEC // 2, cpu_user_pct=1.0),
             snapshot("legacy-1", T0 + 2 * SEC, cpu_user_pct=14.5)],
            agent="agent-v1",
        )  # fmt: skip
        assert result.outcomes["duplicate"] == 1 and result.outcomes["rejected:out_of_order"] == 1 and result.stored == 1

        # the v2 tables work
        assert write_detections(store, [Detection("legacy-1", T0, "iforest", 81.0, "high", {"top": "cpu"})]) == 1
        alert_id = save_alert(store, Alert("legacy-1", T0, T0 + SEC, 81.0, "high"))
        add_feedback(store, alert_id, True, "ana")
        assert [d.score for d in read_detections(store, "legacy-1")] == [81.0]
        assert [a.id for a in read_alerts(store)] == [alert_id]
        assert [(f.alert_id, f.verdict) for f in read_feedback(store)] == [(alert_id, True)]

    assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    assert V2_TABLES <= tables(path)
    assert sql(path, "SELECT host_id, agent_id, ts_ns FROM newest_snapshots") == [(1, 1, T0 + 2 * SEC)]
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    with Store.open(path) as store:  # and it stays at the current version
        assert len(store.snapshots("legacy-1")) == 3


def test_migrate_on_a_current_store_is_a_no_op(tmp_path):
    path = tmp_path / "store.db"
    Store.open(path).close()
    before = path.read_bytes()
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert schema.migrate(conn, path) == schema.SCHEMA_VERSION
    finally:
        conn.close()
    assert path.read_bytes() == before


BROKEN_STEPS = {
    "syntax error": "CREATE TABLE detections (id INTEGER PRIMARY KEY);\nCREATE TABLE half_done (;",
    "missing table": "CREATE TABLE detections (id INTEGER PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);",
    "constraint on existing data": (
        "CREATE TABLE detections (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE alerts (id INTEGER PRIMARY KEY);\n"
        "CREATE UNIQUE INDEX one_host_metric_per_host ON host_metrics(host_id);"
    ),
}


@pytest.mark.parametrize("broken", BROKEN_STEPS)
def test_failed_migration_leaves_version_1_intact(tmp_path, monkeypatch, broken):
    path = tmp_path / "v1.db"
    make_v1_store(path)
    monkeypatch.setattr(schema, "MIGRATIONS", (schema.MIGRATIONS[0], BROKEN_STEPS[broken]))

    with pytest.raises(StoreError) as caught:
        Store.open(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert not isinstance(caught.value, sqlite3.Error)

    monkeypatch.undo()
    assert sql(path, "PRAGMA user_version") == [(1,)]
    assert not tables(path) & (V2_TABLES | {"half_done"})
    assert sql(path, "SELECT name FROM sqlite_master WHERE name = 'one_host_metric_per_host'") == []
    assert sql(path, "PRAGMA integrity_check") == [("ok",)]
    assert sql(path, "SELECT COUNT(*) FROM host_metrics") == [(2,)]

    # with the real migrations the same file upgrades fine
    with Store.open(path) as store:
        assert store.snapshots("legacy-1") == V1_SNAPSHOTS
    assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
