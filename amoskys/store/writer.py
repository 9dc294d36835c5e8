"""The store's single writer: one thread, one connection, group commit.

Callers submit jobs (functions of the connection). The writer takes every job waiting
in its queue, runs them in one transaction, each inside its own savepoint so that a
failing job undoes only itself, commits once (``synchronous=FULL``: the commit is on
disk when it returns), and only then resolves the jobs' futures. Many small writes
thus share one fsync, and nobody is told "done" before the data is durable.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from concurrent.futures import Future
from typing import Any, Callable

from amoskys.errors import StoreError

Job = Callable[[sqlite3.Connection], Any]

MAX_JOBS_PER_COMMIT = 256
_STOP = object()


class GroupCommitWriter:
    def __init__(self, conn: sqlite3.Connection, on_rollback: Callable[[], None], name: str = "store-writer"):
        self._conn = conn
        self._on_rollback = on_rollback  # drop caches that may name rolled-back rows
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
        outcomes: list[tuple[Future, bool, Any]] = []
        # A future its caller cancelled before it ran is skipped (and may no longer be resolved).
        batch = [(job, future) for job, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for job, future in batch:
                outcomes.append((future, *self._run_job(job)))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._abort()
            error = StoreError(f"store write failed: {exc}")
            for _, future in batch:
                future.set_exception(error)
            return
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _run_job(self, job: Job) -> tuple[bool, Any]:
        self._conn.execute("SAVEPOINT job")
        try:
            value = job(self._conn)
        except sqlite3.Error as exc:
            self._undo_job()
            return False, StoreError(f"store write failed: {exc}")
        except Exception as exc:  # a bug in a job must not take other jobs down with it
            self._undo_job()
            return False, exc
        self._conn.execute("RELEASE job")
        return True, value

    def _undo_job(self) -> None:
        self._conn.execute("ROLLBACK TO job")
        self._conn.execute("RELEASE job")
        self._on_rollback()

    def _abort(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # no transaction was open
        self._on_rollback()
