"""GroupCommitWriter: jobs share a transaction but fail alone, and futures mean "committed"."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from amoskys.errors import StoreError
from amoskys.store.writer import MAX_JOBS_PER_COMMIT, GroupCommitWriter

WAIT_S = 10.0


class Harness:
    """A writer on a fresh WAL file with one table t(v), plus a way to hold the writer busy."""

    def __init__(self, path: Path):
        self.path = path
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (v INTEGER PRIMARY KEY)")
        self.conn = conn
        self.rollbacks = 0
        self.rows_before_commit: list[int] = []  # what before_commit saw, per transaction
        self.writer = GroupCommitWriter(conn, on_rollback=self._rolled_back, before_commit=self._before_commit)
        self._release = threading.Event()

    def _rolled_back(self) -> None:
        self.rollbacks += 1

    def _before_commit(self, conn) -> None:
        self.rows_before_commit.append(conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    def committed(self) -> list[int]:
        """The values a separate connection sees."""
        other = sqlite3.connect(self.path, timeout=WAIT_S)
        try:
            return [row[0] for row in other.execute("SELECT v FROM t ORDER BY v")]
        finally:
            other.close()

    def hold(self):
        """Occupy the writer until release(), so that the next jobs queue up into one batch."""
        started = threading.Event()

        def blocker(conn):
            started.set()
            assert self._release.wait(WAIT_S), "test never released the writer"
            return "held"

        future = self.writer.submit(blocker)
        assert started.wait(WAIT_S)
        return future

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.writer.close()
        self.conn.close()


@pytest.fixture
def harness(tmp_path):
    h = Harness(tmp_path / "writer.db")
    yield h
    h.close()


def insert(value: int):
    def job(conn):
        conn.execute("INSERT INTO t(v) VALUES (?)", (value,))
        return value

    return job


def test_failing_job_is_undone_alone_and_others_commit(harness):
    held = harness.hold()
    seen_by_others: list[list[int]] = []

    def raises(conn):
        conn.execute("INSERT INTO t(v) VALUES (2)")
        raise ValueError("boom in job 2")

    def observes(conn):
        conn.execute("INSERT INTO t(v) VALUES (3)")
        seen_by_others.append(harness.committed())
        return 3

    def sqlite_fails(conn):
        conn.execute("INSERT INTO t(v) VALUES (4)")
        conn.execute("INSERT INTO t(v) VALUES (1)")  # primary key taken by job 1
        return 4

    futures = [harness.writer.submit(job) for job in (insert(1), raises, observes, sqlite_fails, insert(5))]
    harness.release()

    assert held.result(WAIT_S) == "held"
    assert futures[0].result(WAIT_S) == 1
    with pytest.raises(ValueError, match="boom in job 2"):
        futures[1].result(WAIT_S)
    assert futures[2].result(WAIT_S) == 3
    with pytest.raises(StoreError, match="UNIQUE"):
        futures[3].result(WAIT_S)
    assert futures[4].result(WAIT_S) == 5

    # job 2 undid the shared transaction; then each job ran alone, in order: job 3 ran once, after job 1's commit
    assert seen_by_others == [[1]]
    assert harness.committed() == [1, 3, 5]
    assert harness.rollbacks == 3  # the shared transaction, then jobs 2 and 4 alone


def test_jobs_share_one_transaction(harness):
    held = harness.hold()
    seen_by_others: list[list[int]] = []

    def observes(conn):
        seen_by_others.append(harness.committed())  # job 1's row must not be visible yet: same transaction
        return "observed"

    futures = [harness.writer.submit(job) for job in (insert(1), observes, insert(2))]
    harness.release()
    assert held.result(WAIT_S) == "held"
    assert [f.result(WAIT_S) for f in futures] == [1, "observed", 2]
    assert seen_by_others == [[]]
    # before_commit ran once per transaction (the holder's, then the three jobs'), inside it
    assert harness.rows_before_commit == [0, 2]


def test_future_resolves_only_after_commit(harness):
    held = harness.hold()
    seen_when_done: list[list[int]] = []
    first_done_inside_transaction: list[bool] = []

    first = harness.writer.submit(insert(7))
    first.add_done_callback(lambda _: seen_when_done.append(harness.committed()))

    def checks_first(conn):
        first_done_inside_transaction.append(first.done())
        return "checked"

    second = harness.writer.submit(checks_first)
    harness.release()

    assert held.result(WAIT_S) == "held"
    assert first.result(WAIT_S) == 7 and second.result(WAIT_S) == "checked"
    assert first_done_inside_transaction == [False]
    assert seen_when_done == [[7]]  # a separate connection already saw the row when the future was done


def test_close_finishes_submitted_jobs_then_refuses_new_ones(harness):
    held = harness.hold()
    futures = [harness.writer.submit(insert(v)) for v in range(10, 30)]
    closer = threading.Thread(target=harness.writer.close)
    closer.start()
    harness.release()
    closer.join(WAIT_S)

    assert not closer.is_alive()
    assert held.result(0) == "held"
    assert [f.result(0) for f in futures] == list(range(10, 30))
    assert harness.committed() == list(range(10, 30))
    with pytest.raises(StoreError, match="closed"):
        harness.writer.submit(insert(99))
    harness.writer.close()  # a second close is harmless
    assert harness.committed() == list(range(10, 30))


def test_cancelled_future_does_not_stop_the_writer(harness):
    """A caller may cancel a pending future (it is a concurrent.futures.Future); the writer must keep going."""
    held = harness.hold()
    cancelled = harness.writer.submit(insert(1))
    assert cancelled.cancel()
    harness.release()
    assert held.result(WAIT_S) == "held"

    later = harness.writer.submit(insert(2))
    assert later.result(5) == 2
    assert 2 in harness.committed()


def test_queued_jobs_share_few_commits(harness):
    """Jobs waiting in the queue are committed together, at most MAX_JOBS_PER_COMMIT to a transaction."""
    commits: list[str] = []
    harness.conn.set_trace_callback(lambda statement: commits.append(statement) if statement == "COMMIT" else None)
    held = harness.hold()
    jobs = MAX_JOBS_PER_COMMIT * 2 + 10
    futures = [harness.writer.submit(insert(v)) for v in range(jobs)]
    harness.release()

    assert held.result(WAIT_S) == "held"
    assert [f.result(WAIT_S) for f in futures] == list(range(jobs))
    assert len(commits) == 1 + 3  # the holder's, then three full-or-less batches
    assert harness.committed() == list(range(jobs))
