"""Small builders shared by the store tests: events, frames, and stores in tmp_path.

The test modules import the builders with ``from .conftest import ...``; this folder is
a package so that its module names cannot clash with test modules elsewhere.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import pytest

from amoskys.store import Store, WriteResult
from amoskys.telemetry.telemetry_pb2 import Event, FlowRecord, HostMetrics, MetricFrame, ProcessEvent

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z, safely in the past
SEC = 1_000_000_000


def snapshot(host: str, ts_ns: int, *, source_agent: str = "", **metrics: float) -> Event:
    """One HostMetrics snapshot as an Event."""
    return Event(metrics=HostMetrics(host_id=host, ts_ns=ts_ns, source_agent=source_agent, metrics=metrics))


def frame(names: Sequence[str], rows: Iterable[tuple[str, int, Sequence[float]]], *, source_agent: str = "") -> Event:
    """A MetricFrame Event; rows are (host, ts_ns, values in the order of names)."""
    body = MetricFrame(source_agent=source_agent, names=list(names))
    for host, ts_ns, values in rows:
        body.host_ids.append(host)
        body.ts_ns.append(ts_ns)
        body.values.extend(values)
    return Event(frame=body)


FLOW_DEFAULTS = dict(
    src_ip="10.0.0.5", src_port=51000, dst_ip="93.184.216.34", dst_port=443, protocol="tcp",
    bytes_sent=1200, bytes_received=5400, packets_sent=10, packets_received=12, duration_ns=2 * SEC,
    state="ESTABLISHED",
)  # fmt: skip


def flow(host: str, ts_ns: int, **fields) -> Event:
    return Event(flow=FlowRecord(host_id=host, ts_ns=ts_ns, **{**FLOW_DEFAULTS, **fields}))


PROCESS_DEFAULTS = dict(kind=ProcessEvent.START, pid=4242, ppid=1, name="sshd", exe="/usr/sbin/sshd", username="root")


def process(host: str, ts_ns: int, **fields) -> Event:
    return Event(process=ProcessEvent(host_id=host, ts_ns=ts_ns, **{**PROCESS_DEFAULTS, **fields}))


def sql(path: Path, query: str, params: tuple = ()) -> list[tuple]:
    """The rows of query, read through a fresh read-only connection of its own."""
    conn = sqlite3.connect(f"{Path(path).as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def count(path: Path, table: str) -> int:
    return sql(path, f"SELECT COUNT(*) FROM {table}")[0][0]


def outcomes(result: WriteResult) -> dict[str, int]:
    """The result's outcomes that counted at least one event."""
    return {outcome: n for outcome, n in result.outcomes.items() if n}


def accounted(result: WriteResult) -> int:
    """How many events the result counts, over every outcome."""
    return sum(result.outcomes.values())


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def store(store_path: Path):
    opened = Store.open(store_path)
    yield opened
    opened.close()
