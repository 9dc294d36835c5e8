"""What a store holds, for ``amoskys store stats``."""

from __future__ import annotations

from amoskys.store.store import Store
from amoskys.timeutil import format_ns

_TABLES = ("hosts", "agents", "host_metrics", "flows", "process_events", "envelopes", "incidents",
           "detections", "alerts", "feedback")  # fmt: skip


def store_stats(store: Store) -> dict:
    """Counts, time range, data source and ingest outcomes of the store, as plain data."""
    db = store.reader()
    counts = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in _TABLES}
    sources = {row[0] for row in db.execute("SELECT DISTINCT data_source FROM agents")}
    first, last = db.execute("SELECT MIN(ts_ns), MAX(ts_ns) FROM host_metrics").fetchone()
    files = [store.path, store.path.with_name(store.path.name + "-wal")]
    return {
        "path": str(store.path),
        "size_bytes": sum(f.stat().st_size for f in files if f.exists()),
        "schema_version": db.execute("PRAGMA user_version").fetchone()[0],
        "journal_mode": db.execute("PRAGMA journal_mode").fetchone()[0],
        "data_source": "mixed" if len(sources) > 1 else next(iter(sources), "empty"),
        "counts": counts,
        "first_snapshot": format_ns(first) if first else None,
        "last_snapshot": format_ns(last) if last else None,
        "agents": dict(db.execute("SELECT name, data_source FROM agents ORDER BY name")),
        "incidents_by_kind": dict(db.execute("SELECT kind, COUNT(*) FROM incidents GROUP BY kind ORDER BY kind")),
        "ingest_outcomes": store.ingest_outcomes(),
    }


def render_stats(stats: dict) -> str:
    counts = stats["counts"]
    lines = [
        f"store        {stats['path']}  ({stats['size_bytes'] / 1e6:.1f} MB, schema v{stats['schema_version']}, "
        f"{stats['journal_mode']} journal)",
        f"data source  {stats['data_source']}",
        f"hosts        {counts['hosts']}",
        f"snapshots    {counts['host_metrics']:,}"
        + (f"  from {stats['first_snapshot']} to {stats['last_snapshot']}" if stats["first_snapshot"] else ""),
        f"flows        {counts['flows']:,}",
        f"processes    {counts['process_events']:,} events",
        f"envelopes    {counts['envelopes']:,}",
        f"incidents    {counts['incidents']:,}"
        + (f"  ({', '.join(f'{k} {n}' for k, n in stats['incidents_by_kind'].items())})" if counts["incidents"] else ""),
        f"detections   {counts['detections']:,}   alerts {counts['alerts']:,}   feedback {counts['feedback']:,}",
    ]
    if stats["agents"]:
        lines.append("agents       " + ", ".join(f"{name} ({source})" for name, source in stats["agents"].items()))
    if stats["ingest_outcomes"]:
        lines.append("ingest       " + ", ".join(f"{k} {n:,}" for k, n in stats["ingest_outcomes"].items()))
    return "\n".join(lines)
