"""Readers beside the writer see whole batches only, never go back, and are never locked out."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from amoskys.store import Store

from .conftest import SEC, T0, count, frame, snapshot

BATCH = 250  # snapshots per write: 5 hosts x 50 times
BATCHES = 40
HOSTS = [f"web-{h}" for h in range(5)]
WAIT_S = 30.0

# A reader in another process: plain sqlite3, read-only, counting rows until it sees `final`.
READER_PROCESS = r"""
import sqlite3, sys, time
uri, final = sys.argv[1], int(sys.argv[2])
conn = sqlite3.connect(uri, uri=True, timeout=30)
seen = []
deadline = time.monotonic() + 30
print("ready", flush=True)
while time.monotonic() < deadline:
    try:
        n = conn.execute("SELECT COUNT(*) FROM host_metrics").fetchone()[0]
    except sqlite3.Error as exc:
        print("error", exc, flush=True)
        continue
    if not seen or seen[-1] != n:
        seen.append(n)
    if n == final:
        break
print("counts", *seen, flush=True)
"""


def batch(b: int):
    rows = [(host, T0 + (b * 50 + i) * SEC, [float(b % 100), 1e6 * b + i]) for i in range(50) for host in HOSTS]
    return [frame(["cpu_user_pct", "mem_used_bytes"], rows)]


def check_counts(counts: list[int], who: str) -> None:
    assert counts, f"{who} saw nothing"
    assert all(n % BATCH == 0 for n in counts), f"{who} saw a part of a batch: {counts}"
    assert counts == sorted(counts), f"{who} saw the count go down: {counts}"
    assert counts[-1] == BATCH * BATCHES, f"{who} never saw the last batch: {counts}"


def test_readers_see_whole_batches_while_the_writer_commits(store, store_path):
    reader_process = subprocess.Popen(
        [sys.executable, "-c", READER_PROCESS, f"{store_path.as_uri()}?mode=ro", str(BATCH * BATCHES)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader_process.stdout.readline().strip() == "ready"

        stop = threading.Event()
        thread_counts: list[int] = []
        thread_snapshot_counts: list[int] = []
        thread_errors: list[BaseException] = []

        def read_in_thread() -> None:
            try:
                db = store.reader()
                deadline = time.monotonic() + WAIT_S
                while time.monotonic() < deadline:
                    done = stop.is_set()  # read once more after the writer is done
                    thread_counts.append(db.execute("SELECT COUNT(*) FROM host_metrics").fetchone()[0])
                    thread_snapshot_counts.append(len(store.snapshots("web-3")))
                    if done:
                        break
            except BaseException as exc:  # noqa: BLE001 - reported below
                thread_errors.append(exc)

        reader = threading.Thread(target=read_in_thread)
        reader.start()
        for b in range(BATCHES):
            assert store.write(batch(b), agent="agent").stored == BATCH
            time.sleep(0.002)
        stop.set()
        reader.join(WAIT_S)
        out, err = reader_process.communicate(timeout=WAIT_S)
    finally:
        if reader_process.poll() is None:
            reader_process.kill()
            reader_process.wait(WAIT_S)

    assert not reader.is_alive()
    assert thread_errors == []
    check_counts(thread_counts, "reader thread")
    assert all(n % 50 == 0 for n in thread_snapshot_counts), thread_snapshot_counts
    assert thread_snapshot_counts == sorted(thread_snapshot_counts)
    assert thread_snapshot_counts[-1] == 50 * BATCHES

    assert reader_process.returncode == 0, err
    assert "error" not in out and "locked" not in err, out + err
    process_counts = [int(n) for n in out.split("counts", 1)[1].split()]
    check_counts(process_counts, "reader process")
    assert len(process_counts) >= 3, f"the reader process saw too few commits to test anything: {process_counts}"
    assert count(store_path, "host_metrics") == BATCH * BATCHES


def test_many_threads_writing_at_once_all_get_their_results(store, store_path):
    threads, writes, rows = 8, 15, 20
    barrier = threading.Barrier(threads)
    results: dict[int, list] = {t: [] for t in range(threads)}
    errors: list[BaseException] = []

    def write_many(t: int) -> None:
        try:
            barrier.wait(WAIT_S)
            for w in range(writes):
                events = [snapshot(f"host-{t}", T0 + (w * rows + i) * SEC, cpu_user_pct=float(t)) for i in range(rows)]
                results[t].append(store.write(events, agent=f"agent-{t % 2}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=write_many, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT_S)

    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    for t in range(threads):
        assert [r.stored for r in results[t]] == [rows] * writes
        assert sum(r.total for r in results[t]) == writes * rows
    total = threads * writes * rows
    assert count(store_path, "host_metrics") == total
    assert store.ingest_outcomes() == {"stored": total}
    for t in range(threads):
        assert len(store.snapshots(f"host-{t}")) == writes * rows


def test_writes_queued_behind_a_busy_writer_share_one_commit(store, store_path):
    commits: list[str] = []
    release, started = threading.Event(), threading.Event()

    def hold(conn):
        started.set()
        return release.wait(WAIT_S)

    holder = threading.Thread(target=store.run_in_writer, args=(hold,))
    holder.start()
    assert started.wait(WAIT_S)
    store._writer_conn.set_trace_callback(lambda s: commits.append(s) if s == "COMMIT" else None)

    futures = [
        store.submit([snapshot(f"host-{w}", T0 + i * SEC, cpu_user_pct=1.0) for i in range(10)], agent="agent")
        for w in range(40)
    ]
    release.set()
    results = [f.result(WAIT_S) for f in futures]
    holder.join(WAIT_S)

    assert [r.stored for r in results] == [10] * 40
    assert len(commits) == 2  # the holder's transaction, then one for all 40 writes
    assert count(store_path, "host_metrics") == 400


def test_reader_connections_are_per_thread_and_read_only(store):
    store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="agent")
    mine = store.reader()
    assert store.reader() is mine
    other: list = []
    worker = threading.Thread(target=lambda: other.append(store.reader()))
    worker.start()
    worker.join(WAIT_S)
    assert other and other[0] is not mine
    assert mine.execute("PRAGMA query_only").fetchone()[0] == 1
    assert mine.execute("SELECT COUNT(*) FROM host_metrics").fetchone()[0] == 1


def test_store_reopens_while_another_process_reads(store_path):
    """Closing and reopening the writer while a reader process holds the file open loses nothing."""
    with Store.open(store_path) as store:
        store.write(batch(0), agent="agent")
    reader_process = subprocess.Popen(
        [sys.executable, "-c", READER_PROCESS, f"{store_path.as_uri()}?mode=ro", str(2 * BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader_process.stdout.readline().strip() == "ready"
        with Store.open(store_path) as store:
            assert store.write(batch(1), agent="agent").stored == BATCH
        out, err = reader_process.communicate(timeout=WAIT_S)
    finally:
        if reader_process.poll() is None:
            reader_process.kill()
            reader_process.wait(WAIT_S)
    assert reader_process.returncode == 0, err
    counts = [int(n) for n in out.split("counts", 1)[1].split()]
    assert counts[-1] == 2 * BATCH and all(n in (BATCH, 2 * BATCH) for n in counts)
