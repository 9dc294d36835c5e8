"""Detections, alerts and analyst feedback in the store.

Detections are every scored row, compactly; alerts are what an analyst looks at;
feedback is the analyst's verdict on an alert, which later becomes a training label.
Writes go through the store's single writer, so they are durable when these return.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from amoskys.errors import InputError
from amoskys.store.store import Store
from amoskys.timeutil import now_ns

_to_json = json.JSONEncoder(separators=(",", ":")).encode  # details, compact: a detection's for every scored row


class Detection(NamedTuple):
    """One scored row (a tuple, immutable: the live path makes one per row, and a frozen dataclass costs more)."""

    host: str
    ts_ns: int
    model_set: str
    score: float  # 0-100, calibrated
    level: str
    details: dict  # models' scores, rule hits, top features


@dataclass(frozen=True)
class Alert:
    host: str
    start_ns: int
    end_ns: int
    peak_score: float
    level: str
    status: str = "open"
    details: dict = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class Feedback:
    alert_id: int
    verdict: bool  # True: a real incident; False: a false alarm
    analyst: str
    note: str = ""
    created_ns: int = 0


def write_detections(store: Store, detections: list[Detection]) -> int:
    """Store scored rows; a row already stored for the same host, time and model set is kept. Returns new rows."""
    return store.run_in_writer(_detections_job(store, detections))


def write_scored(store: Store, detections: list[Detection], alerts: list[Alert]) -> list[int]:
    """A micro-batch's detections (as ``write_detections``) and alert changes (as ``save_alert``) in one
    transaction, so one disk sync; returns the alerts' ids."""
    detections_job, alerts_job = _detections_job(store, detections), _alerts_job(store, alerts)

    def job(conn) -> list[int]:
        detections_job(conn)
        return alerts_job(conn)

    return store.run_in_writer(job)


def _detections_job(store: Store, detections: list[Detection]) -> Callable[[sqlite3.Connection], int]:
    """The writer job inserting detections (checked now, before anything is queued)."""
    for d in detections:
        if not 0 <= d.score <= 100:
            raise InputError(f"detection score {d.score} for {d.host} is outside 0..100")

    def job(conn) -> int:
        rows = [
            (store.host_id(conn, d.host), d.ts_ns, d.model_set, d.score, d.level, _to_json(d.details))
            for d in detections
        ]
        sql = "INSERT INTO detections(host_id, ts_ns, model_set, score, level, details) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        return conn.executemany(sql, rows).rowcount

    return job


def read_detections(store: Store, host: str, since_ns: int = 0) -> list[Detection]:
    rows = store.reader().execute(
        "SELECT h.name, d.ts_ns, d.model_set, d.score, d.level, d.details FROM detections d "
        "JOIN hosts h ON h.id = d.host_id WHERE h.name = ? AND d.ts_ns >= ? ORDER BY d.ts_ns",
        (host, since_ns),
    )
    return [Detection(*row[:5], details=json.loads(row[5])) for row in rows]


def save_alert(store: Store, alert: Alert) -> int:
    """Insert a new alert (id None) or update an existing one; returns its id."""
    return store.run_in_writer(_alerts_job(store, [alert]))[0]


def _alerts_job(store: Store, alerts: list[Alert]) -> Callable[[sqlite3.Connection], list[int]]:
    """The writer job inserting or updating alerts (checked now), giving their ids."""
    for alert in alerts:
        if not 0 <= alert.peak_score <= 100 or alert.status not in ("open", "closed"):
            raise InputError(f"alert on {alert.host}: peak score must be 0..100 and status open or closed")

    def save(conn, alert: Alert) -> int:
        values = (alert.end_ns, alert.peak_score, alert.level, alert.status, _to_json(alert.details))
        if alert.id is None:
            return conn.execute(
                "INSERT INTO alerts(host_id, start_ns, end_ns, peak_score, level, status, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (store.host_id(conn, alert.host), alert.start_ns, *values),
            ).lastrowid
        cursor = conn.execute(
            "UPDATE alerts SET end_ns = ?, peak_score = ?, level = ?, status = ?, details = ? WHERE id = ?",
            (*values, alert.id),
        )
        if cursor.rowcount == 0:
            raise InputError(f"no alert {alert.id} to update")
        return alert.id

    return lambda conn: [save(conn, alert) for alert in alerts]


def read_alerts(store: Store, status: str | None = None) -> list[Alert]:
    rows = store.reader().execute(
        "SELECT h.name, a.start_ns, a.end_ns, a.peak_score, a.level, a.status, a.details, a.id FROM alerts a "
        "JOIN hosts h ON h.id = a.host_id WHERE ? IS NULL OR a.status = ? ORDER BY a.start_ns, a.id",
        (status, status),
    )
    return [Alert(*row[:6], details=json.loads(row[6]), id=row[7]) for row in rows]


def first_alerted_hit(store: Store, rule: str, min_score: float, since_ns: int,
                      until_ns: int = 2**63 - 1) -> tuple[int, Alert] | None:  # fmt: skip
    """The first detection in [since_ns, until_ns] scoring at least min_score with rule among its rule hits that
    an alert of its host covers: (its time, the alert); None when there is none."""
    row = store.reader().execute(
        "SELECT d.ts_ns, a.id FROM detections d JOIN alerts a ON a.host_id = d.host_id "
        "AND d.ts_ns BETWEEN a.start_ns AND a.end_ns WHERE d.ts_ns BETWEEN ? AND ? AND d.score >= ? "
        "AND EXISTS (SELECT 1 FROM json_each(d.details, '$.rules') WHERE value = ?) ORDER BY d.ts_ns, a.id LIMIT 1",
        (since_ns, until_ns, min_score, rule),
    ).fetchone()
    return None if row is None else (row[0], read_alert(store, row[1]))


def read_alert(store: Store, alert_id: int) -> Alert:
    row = store.reader().execute(
        "SELECT h.name, a.start_ns, a.end_ns, a.peak_score, a.level, a.status, a.details, a.id FROM alerts a "
        "JOIN hosts h ON h.id = a.host_id WHERE a.id = ?",
        (alert_id,),
    ).fetchone()
    if row is None:
        raise InputError(f"no alert {alert_id} in {store.path}")
    return Alert(*row[:6], details=json.loads(row[6]), id=row[7])


def add_feedback(store: Store, alert_id: int, verdict: bool, analyst: str, note: str = "") -> Feedback:
    """Record an analyst's verdict on an alert."""
    feedback = Feedback(alert_id, verdict, analyst, note, now_ns())

    def job(conn) -> None:
        if conn.execute("SELECT 1 FROM alerts WHERE id = ?", (alert_id,)).fetchone() is None:
            raise InputError(f"no alert {alert_id}")
        conn.execute(
            "INSERT INTO feedback(alert_id, verdict, analyst, note, created_ns) VALUES (?, ?, ?, ?, ?)",
            (alert_id, int(verdict), analyst, note, feedback.created_ns),
        )

    store.run_in_writer(job)
    return feedback


def read_feedback(store: Store, alert_id: int | None = None) -> list[Feedback]:
    rows = store.reader().execute(
        "SELECT alert_id, verdict, analyst, note, created_ns FROM feedback WHERE ? IS NULL OR alert_id = ? ORDER BY id",
        (alert_id, alert_id),
    )
    return [Feedback(a, bool(v), who, note, ts) for a, v, who, note, ts in rows]
