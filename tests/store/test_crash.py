"""kill -9 of a writing process: the file stays intact and every acknowledged batch is in it, whole."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from amoskys.store import Store

from .conftest import SEC, T0, frame

ROWS = 2000  # snapshots per batch: 20 hosts x 100 times
HOSTS = 20
TIMES = ROWS // HOSTS
WAIT_S = 30.0
KILL_DELAYS_S = (0.0, 0.005, 0.008, 0.011, 0.014)  # land the kill at different points of a batch
REPO = Path(__file__).resolve().parents[2]

# Writes batch after batch, printing each batch number once store.write() has returned (committed).
WRITER = r"""
import sys, time
from amoskys.store import Store
from amoskys.telemetry.telemetry_pb2 import Event, MetricFrame

path, first = sys.argv[1], int(sys.argv[2])
T0, SEC, ROWS, HOSTS, TIMES = 1_767_225_600_000_000_000, 1_000_000_000, 2000, 20, 100
store = Store.open(path)
deadline = time.monotonic() + 60  # never outlive a test that forgot it
b = first
while time.monotonic() < deadline:
    f = MetricFrame(names=["cpu_user_pct", "mem_used_bytes"])
    for j in range(ROWS):
        f.host_ids.append(f"h{j % HOSTS}")
        f.ts_ns.append(T0 + (b * TIMES + j // HOSTS) * SEC)
        f.values.extend((float(b % 100), float(b * ROWS + j)))
    result = store.write([Event(frame=f)], agent="crash-agent")
    if result.stored != ROWS:
        print("bad", result, flush=True)
        sys.exit(3)
    print(b, flush=True)
    b += 1
"""


def batch_rows(b: int):
    return [(f"h{j % HOSTS}", T0 + (b * TIMES + j // HOSTS) * SEC, [float(b % 100), float(b * ROWS + j)]) for j in range(ROWS)]


def kill_while_writing(path: Path, first: int, acks_before_kill: int, delay_s: float) -> list[int]:
    """Run the writer from batch first; SIGKILL it delay_s after its acks_before_kill-th acknowledgement.

    Returns every batch number it acknowledged.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in child.stdout:
            lines.put(line.strip())
        lines.put(None)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    acked: list[int] = []
    try:
        while len(acked) < acks_before_kill:
            line = lines.get(timeout=WAIT_S)
            assert line is not None and line.isdigit(), f"writer stopped: {line!r} {child.stderr.read()}"
            acked.append(int(line))
        time.sleep(delay_s)  # a batch takes ~15 ms: ~4 building the frame, then checks, inserts, fsync
        os.kill(child.pid, signal.SIGKILL)  # it is writing the next batch
        assert child.wait(WAIT_S) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(WAIT_S)
    pumper.join(WAIT_S)
    # lines printed before the kill are acknowledgements too
    while (line := lines.get(timeout=WAIT_S)) is not None:
        if line.isdigit():
            acked.append(int(line))
    child.stdout.close()
    child.stderr.close()
    assert acked == list(range(first, first + len(acked)))
    return acked


def stored_batches(path: Path) -> dict[int, int]:
    """{batch number: rows stored}, read through a plain connection of its own (which recovers the WAL)."""
    conn = sqlite3.connect(path, timeout=WAIT_S)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute(
            "SELECT (ts_ns - ?) / ?, COUNT(*) FROM host_metrics GROUP BY 1 ORDER BY 1", (T0, TIMES * SEC)
        ).fetchall()
        return dict(rows)
    finally:
        conn.close()


def test_kill_9_mid_batch_loses_no_acknowledged_batch(tmp_path):
    path = tmp_path / "store.db"
    acked: list[int] = []
    for round_, delay_s in enumerate(KILL_DELAYS_S):
        first = len(stored_batches(path)) if round_ else 0
        acked += kill_while_writing(path, first, acks_before_kill=3 if round_ == 0 else 1, delay_s=delay_s)

        batches = stored_batches(path)
        assert set(acked) <= set(batches), f"acknowledged batches missing: {sorted(set(acked) - set(batches))}"
        assert all(rows == ROWS for rows in batches.values()), f"a batch is partly stored: {batches}"
        assert sorted(batches) == list(range(len(batches)))  # no gaps: batches commit in order
        assert len(batches) <= max(acked) + 2  # at most the one in flight beyond the acknowledged

    last = max(acked)
    with Store.open(path) as store:
        snapshots = store.snapshots("h7", since_ns=T0 + last * TIMES * SEC, until_ns=T0 + (last + 1) * TIMES * SEC)
        assert [s.metrics for s in snapshots] == [
            {"cpu_user_pct": float(last % 100), "mem_used_bytes": float(last * ROWS + j)} for j in range(7, ROWS, HOSTS)
        ]
        after = len(stored_batches(path))
        result = store.write([frame(["cpu_user_pct", "mem_used_bytes"], batch_rows(after))], agent="crash-agent")
        assert result.stored == ROWS
        # the batch the killed writer may have had in flight is a duplicate now, not a second copy
        again = store.write([frame(["cpu_user_pct", "mem_used_bytes"], batch_rows(after - 1))], agent="crash-agent")
        assert again.duplicate == ROWS
    batches = stored_batches(path)
    assert batches == {b: ROWS for b in range(after + 1)}
