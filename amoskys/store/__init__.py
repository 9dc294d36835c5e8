"""The durable store: SQLite in WAL mode, one group-committing writer, concurrent readers."""

from amoskys.store.outcomes import WriteResult
from amoskys.store.store import IncidentRow, Snapshot, Store

__all__ = ["IncidentRow", "Snapshot", "Store", "WriteResult"]
