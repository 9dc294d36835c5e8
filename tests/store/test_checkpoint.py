"""The write-ahead log is copied into the database file by the checkpoint thread, not by the writer's commits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from amoskys.store import Store

from .conftest import SEC, T0, frame


def test_commits_reach_the_database_file_through_the_checkpoint_thread(store_path: Path):
    with Store.open(store_path) as store:
        assert store._writer_conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        before = store_path.stat().st_size
        rows = [(f"h{i % 10}", T0 + i * SEC, [float(i % 100)]) for i in range(5000)]
        assert store.write([frame(["cpu_user_pct"], rows)], agent="a").stored == 5000
        deadline = time.monotonic() + 5.0
        while store_path.stat().st_size == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store_path.stat().st_size > before, "the log was never checkpointed into the database file"
    # closed: the database file alone (the log is gone or empty) holds every row
    assert not Path(f"{store_path}-wal").exists() or Path(f"{store_path}-wal").stat().st_size == 0
    with sqlite3.connect(store_path) as db:
        assert db.execute("SELECT count(*) FROM host_metrics").fetchone()[0] == 5000
