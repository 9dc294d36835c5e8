"""Checks and packs a write's events before the writer sees them.

This part needs no database, so it runs in the caller's thread while the writer
thread is inside SQLite (which releases the GIL): the two overlap on two cores.
Metric snapshots, single ``HostMetrics`` or ``MetricFrame`` rows, end up as one
matrix of values per metric set, checked and packed with numpy rather than value by
value, then sorted by host and time (``HostRuns``) so that the writer, the store's one
serial step, only maps host ids and compares times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from amoskys.store.outcomes import WriteResult
from amoskys.telemetry import validate
from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame, ProcessEvent
from amoskys.telemetry.validate import Problem

VALUE_DTYPE = np.dtype("<f8")  # how snapshot values are stored: little-endian float64


@dataclass
class SnapshotGroup:
    """Valid snapshots sharing one metric set."""

    names: tuple[str, ...]
    hosts: list[str]
    ts_ns: np.ndarray  # int64, one per snapshot
    packed: list[bytes]  # each snapshot's values as VALUE_DTYPE bytes, in names order


@dataclass
class HostRuns:
    """A write's valid snapshots of every metric set, sorted by host then time (stably: of two
    equal snapshots the first offered comes first), so the writer only maps ids and compares."""

    hosts: list[str]  # each run's host
    starts: np.ndarray  # run r is rows starts[r]:starts[r + 1]
    ts_ns: np.ndarray
    repeated: np.ndarray  # bool: same host and time as the row before
    sets: list[tuple[str, ...]]  # the metric sets
    set_of_row: np.ndarray  # index into sets
    packed: list[bytes]


@dataclass
class PreparedWrite:
    """A write's valid events, ready for the writer, and the count of the rejected."""

    agent: str
    events: int  # how many events were offered, frame rows counted one by one
    result: WriteResult = field(default_factory=WriteResult)
    snapshots: HostRuns | None = None
    flows: list[tuple[str, tuple]] = field(default_factory=list)  # (host, row without host)
    processes: list[tuple[str, tuple]] = field(default_factory=list)
    checksum: bytes = b""  # sha256 of the envelope's payload, when there is one


def prepare_events(events: Iterable[Event], agent: str, now_ns: int, max_future_ns: int) -> PreparedWrite:
    events = list(events)
    prepared = PreparedWrite(agent, events=sum(_event_count(event) for event in events))
    result = prepared.result
    singles: dict[tuple[str, ...], tuple[list, list, list]] = {}
    matrices = []  # (names, hosts, ts_ns, values)
    for event in events:
        body = event.WhichOneof("body")
        if body is None:
            result.reject(Problem("empty_event", "event carries no metrics, frame, flow or process body"))
            continue
        record = getattr(event, body)
        if record.source_agent not in ("", agent):
            problem = Problem("agent_mismatch", f"event from agent {record.source_agent!r} inside a batch of {agent!r}")
            result.reject(problem, events=_event_count(event))
        elif body == "metrics":
            metrics = record.metrics
            names = tuple(sorted(metrics))
            hosts, stamps, rows = singles.setdefault(names, ([], [], []))
            hosts.append(record.host_id)
            stamps.append(record.ts_ns)
            rows.append(list(map(metrics.__getitem__, names)))
        elif body == "frame":
            matrix = _frame_matrix(record, result)
            if matrix is not None:
                matrices.append(matrix)
        else:
            problem = validate.check_header(record.host_id, record.ts_ns, now_ns, max_future_ns)
            if body == "flow":
                _add_record(prepared.flows, record, problem or validate.check_flow(record), _flow_row, result)
            else:
                _add_record(prepared.processes, record, problem or validate.check_process(record), _process_row, result)
    for names, (hosts, stamps, rows) in singles.items():
        values = np.array(rows, dtype=VALUE_DTYPE).reshape(len(hosts), len(names))
        matrices.append((names, hosts, np.array(stamps, dtype=np.int64), values))
    groups = [_valid_snapshots(*matrix, now_ns, max_future_ns, result) for matrix in matrices]
    prepared.snapshots = _host_runs([group for group in groups if group is not None])
    return prepared


def _host_runs(groups: list[SnapshotGroup]) -> HostRuns | None:
    if not groups:
        return None
    codes: dict[str, int] = {}  # host -> a number, in order of appearance (sorting numbers beats strings)
    host_code = np.array([codes.setdefault(host, len(codes)) for group in groups for host in group.hosts])
    ts = np.concatenate([group.ts_ns for group in groups])
    order = np.lexsort((ts, host_code))  # stable
    host_code, ts = host_code[order], ts[order]
    new_host = np.ones(len(ts), dtype=bool)
    new_host[1:] = host_code[1:] != host_code[:-1]
    repeated = ~new_host
    repeated[1:] &= ts[1:] == ts[:-1]
    starts = np.append(np.flatnonzero(new_host), len(ts))
    set_of_row = np.concatenate([np.full(len(group.hosts), i) for i, group in enumerate(groups)])[order]
    packed = [blob for group in groups for blob in group.packed]
    return HostRuns([*codes], starts, ts, repeated, [group.names for group in groups],
                    set_of_row, [packed[i] for i in order.tolist()])  # fmt: skip


def _event_count(event: Event) -> int:
    return len(event.frame.host_ids) if event.WhichOneof("body") == "frame" else 1


def _frame_matrix(frame: MetricFrame, result: WriteResult):
    rows, width = len(frame.host_ids), len(frame.names)
    if len(frame.ts_ns) != rows or len(frame.values) != rows * width:
        detail = f"metric frame of {rows} rows has {len(frame.ts_ns)} timestamps and {len(frame.values)} values for {width} names"
        result.reject(Problem("bad_frame", detail), events=rows)
        return None
    values = np.array(frame.values, dtype=VALUE_DTYPE).reshape(rows, width)
    return tuple(frame.names), list(frame.host_ids), np.array(frame.ts_ns, dtype=np.int64), values


def _valid_snapshots(names, hosts, ts_ns, values, now_ns, max_future_ns, result) -> SnapshotGroup | None:
    """The valid rows of a snapshot matrix; counts the others as rejected."""
    checked = validate.metric_set(names)
    if isinstance(checked, Problem):
        result.reject(checked, events=len(hosts))
        return None
    ok = checked.rows_in_range(values)
    ok &= (ts_ns > 0) & (ts_ns <= now_ns + max_future_ns)
    good_host = {host: validate.host_id_ok(host) for host in set(hosts)}  # a frame names few hosts, many times
    ok &= np.fromiter(map(good_host.__getitem__, hosts), dtype=bool, count=len(hosts))
    for i in np.flatnonzero(~ok).tolist():
        problem = validate.check_header(hosts[i], int(ts_ns[i]), now_ns, max_future_ns)
        result.reject(problem or checked.row_problem(hosts[i], values[i]))
    if not ok.any():
        return None
    valid = np.flatnonzero(ok)
    return SnapshotGroup(names, [hosts[i] for i in valid.tolist()], ts_ns[valid], _row_bytes(values[valid]))


def _row_bytes(values: np.ndarray) -> list[bytes]:
    """Each row of a matrix as bytes, in one numpy call rather than a loop."""
    row = np.dtype((np.void, values.shape[1] * values.itemsize))
    return np.ascontiguousarray(values).view(row).ravel().tolist()


def _add_record(rows: list, record, problem: Problem | None, make_row, result: WriteResult) -> None:
    if problem is not None:
        result.reject(problem)
    else:
        rows.append((record.host_id, make_row(record)))


def _flow_row(record) -> tuple:
    return (
        record.ts_ns, record.src_ip, record.src_port, record.dst_ip, record.dst_port, record.protocol,
        record.bytes_sent, record.bytes_received, record.packets_sent, record.packets_received,
        record.duration_ns, record.state,
    )  # fmt: skip


def _process_row(record) -> tuple:
    kind = "start" if record.kind == ProcessEvent.START else "exit"
    return (
        record.ts_ns, kind, record.pid, record.ppid, record.name, record.exe, record.username, record.exit_code,
    )  # fmt: skip
