"""The store's single writer: one thread, one connection, group commit.

Callers submit jobs (functions of the connection). The writer takes every job waiting
in its queue, runs them in one transaction, then ``before_commit`` (what the jobs left
to write once per transaction, e.g. summed counters), commits once
(``synchronous=FULL``: the commit is on disk when it returns), and only then resolves
the jobs' futures. Many small writes thus share one fsync, and nobody is told "done"
before the data is durable.

A job that fails undoes the whole transaction; the jobs of that transaction then run
again, each in its own, so that only the failing one fails. A job may therefore run
twice: it must not change its inputs. (A savepoint per job would spare that, at the
price of two more statements per job, each a wait for the GIL under load.)
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from amoskys.errors import StoreError

Job = Callable[[sqlite3.Connection], Any]

MAX_JOBS_PER_COMMIT = 256
_STOP = object()


@dataclass
class _Failed:
    error: BaseException
    by_job: bool  # a job raised it (rather than BEGIN or COMMIT)


class GroupCommitWriter:
    def __init__(self, conn: sqlite3.Connection, on_rollback: Callable[[], None],
                 before_commit: Callable[[sqlite3.Connection], None] = lambda conn: None, name: str = "store-writer"):  # fmt: skip
        self._conn = conn
        self._on_rollback = on_rollback  # drop caches that may name rolled-back rows
        self._before_commit = before_commit
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> Future:
        """Queue job; its future resolves once the transaction holding it is committed."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            self._queue.put((job, future))
        return future

    def close(self) -> None:
        """Finish every job already submitted, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < MAX_JOBS_PER_COMMIT:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[tuple[Job, Future]]) -> None:
        # A future its caller cancelled before it ran is skipped (and may no longer be resolved).
        batch = [(job, future) for job, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        outcome = self._transaction([job for job, _ in batch])
        if isinstance(outcome, _Failed) and outcome.by_job and len(batch) > 1:
            for job, future in batch:  # each alone: only the failing job fails
                _resolve([future], self._transaction([job]))
            return
        _resolve([future for _, future in batch], outcome)

    def _transaction(self, jobs: list[Job]) -> list | _Failed:
        """Run jobs in one transaction and commit it: their values, or what failed (then nothing is kept)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            values = []
            for job in jobs:
                try:
                    values.append(job(self._conn))
                except Exception as exc:  # a bug in a job must not take other jobs down with it
                    self._abort()
                    return _Failed(_store_error(exc), by_job=True)
            self._before_commit(self._conn)
            self._conn.execute("COMMIT")
        except Exception as exc:  # BEGIN, before_commit or COMMIT: every job fails with it
            self._abort()
            return _Failed(_store_error(exc), by_job=False)
        return values

    def _abort(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open
        self._on_rollback()


def _store_error(exc: Exception) -> Exception:
    return StoreError(f"store write failed: {exc}") if isinstance(exc, sqlite3.Error) else exc


def _resolve(futures: list[Future], outcome: list | _Failed) -> None:
    for i, future in enumerate(futures):
        if isinstance(outcome, _Failed):
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome[i])
