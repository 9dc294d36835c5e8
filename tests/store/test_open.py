"""Opening: anything that is not an AMOSKYS store is refused with a StoreError and left as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from amoskys.errors import AmoskysError, StoreError
from amoskys.store import Store, schema

from .conftest import SEC, T0, snapshot, sql


def refused(path: Path, **kwargs) -> StoreError:
    """The StoreError Store.open raises for path; it must be one clear line and hide SQLite's exception."""
    with pytest.raises(StoreError) as caught:
        Store.open(path, **kwargs)
    error = caught.value
    assert isinstance(error, AmoskysError) and not isinstance(error, sqlite3.Error)
    message = str(error)
    assert message and "\n" not in message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error


def make_store(path: Path, snapshots: int = 50) -> bytes:
    """A closed store at path holding some snapshots; returns its bytes."""
    with Store.open(path) as store:
        store.write([snapshot("web-1", T0 + i * SEC, cpu_user_pct=float(i % 100)) for i in range(snapshots)], agent="a")
    assert not Path(f"{path}-wal").exists()  # checkpointed on close
    return path.read_bytes()


def test_text_file_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes\nnot a database\n")
    before = path.read_bytes()

    error = refused(path)
    assert "not an AMOSKYS store" in str(error) and str(path) in str(error)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_foreign_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER)")
    conn.execute("INSERT INTO customers(name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()

    error = refused(path)
    message = str(error)
    assert "not an AMOSKYS store" in message and "customers" in message and "orders" in message
    assert path.read_bytes() == before
    assert sql(path, "SELECT name FROM customers") == [("ada",)]
    assert sql(path, "PRAGMA journal_mode") == [("delete",)]


def test_foreign_empty_database_with_another_application_id_is_refused(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    before = path.read_bytes()

    assert "not an AMOSKYS store" in str(refused(path))
    assert path.read_bytes() == before


@pytest.mark.parametrize("keep", [16, 100, 4096], ids=["magic-only", "header", "first-page"])
def test_corrupted_store_is_refused(tmp_path, keep):
    path = tmp_path / "store.db"
    good = make_store(path)
    garbled = good[:keep] + bytes((b * 151 + 7) % 256 for b in range(len(good) - keep))
    path.write_bytes(garbled)

    error = refused(path)
    assert str(path) in str(error)
    assert path.read_bytes() == garbled


@pytest.mark.parametrize("fraction", [0.002, 0.05, 0.5])
def test_truncated_store_is_refused(tmp_path, fraction):
    path = tmp_path / "store.db"
    good = make_store(path, snapshots=2000)
    cut = good[: int(len(good) * fraction)]
    assert cut.startswith(schema.SQLITE_MAGIC)
    path.write_bytes(cut)

    refused(path)
    assert path.read_bytes() == cut


def test_directory_is_refused(tmp_path):
    folder = tmp_path / "store.db"
    folder.mkdir()
    assert "folder" in str(refused(folder))
    assert list(folder.iterdir()) == []


def test_path_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "data"
    blocker.write_text("a file where a folder should be")
    error = refused(blocker / "store.db")
    assert str(blocker) in str(error)
    assert blocker.read_text() == "a file where a folder should be"


def test_missing_file_without_create_is_refused_and_not_created(tmp_path):
    path = tmp_path / "sub" / "store.db"
    assert "no store" in str(refused(path, create=False))
    assert not path.exists() and not path.parent.exists()


def test_missing_file_and_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "store.db"
    with Store.open(path) as store:
        assert store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="a").stored == 1
    assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]
    with Store.open(path, create=False) as store:
        assert store.hosts() == ["web-1"]


def test_empty_file_becomes_a_store(tmp_path):
    path = tmp_path / "store.db"
    path.touch()
    with Store.open(path) as store:
        assert store.write([snapshot("web-1", T0, cpu_user_pct=1.0)], agent="a").stored == 1
    assert sql(path, "PRAGMA application_id") == [(schema.APPLICATION_ID,)]


def test_newer_schema_version_is_refused_untouched(tmp_path):
    path = tmp_path / "store.db"
    make_store(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()

    message = str(refused(path))
    assert "upgrade" in message and str(schema.SCHEMA_VERSION + 1) in message
    assert path.read_bytes() == before
    assert sql(path, "PRAGMA user_version") == [(schema.SCHEMA_VERSION + 1,)]
    assert sql(path, "SELECT COUNT(*) FROM host_metrics") == [(50,)]


def test_refusal_leaves_a_good_store_next_to_it_usable(tmp_path):
    good = tmp_path / "good.db"
    make_store(good)
    bad = tmp_path / "bad.db"
    bad.write_bytes(bytes(range(256)) * 16)
    refused(bad)
    with Store.open(good) as store:
        assert len(store.snapshots("web-1")) == 50
