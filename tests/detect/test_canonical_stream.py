"""Stage 1 on the stream gives exactly the batch stage's rows, however the snapshots are cut into pushes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from amoskys.config import SimulatorConfig
from amoskys.detect.canonical import COUNT_NAMES, StreamCanonical
from amoskys.pipeline.canonical import build_canonical
from amoskys.pipeline.source import RawTelemetry, simulated

NS = 1_000_000_000


def awkward_fleet(duration_s: float = 1800) -> RawTelemetry:
    """A simulated fleet with what real agents produce: gaps short and long, duplicates, a counter reset,
    NaN and infinite values, a metric that arrives late."""
    raw = simulated(SimulatorConfig(hosts=3, duration_seconds=duration_s, seed=3))
    snaps = raw.snapshots.drop("label", "incident", strict=False).with_row_index("_i")
    rng = np.random.default_rng(1)
    keep = rng.random(snaps.height) > 0.03  # scattered missing snapshots: short gaps, filled
    keep[100:130] = False  # a long gap on the first host: partly filled, the rest dropped
    snaps = snaps.filter(pl.Series(keep))
    duplicates = snaps.filter(pl.col("_i") % 97 == 0).with_columns(pl.col("ts_ns") + NS)  # same bucket, later
    snaps = pl.concat([snaps, duplicates.with_columns(pl.col("cpu_idle_pct") * 0.5)]).sort("host", "ts_ns")
    snaps = snaps.with_columns(
        pl.when(pl.col("_i") == 200).then(0.0).otherwise(pl.col("net_rx_bytes_total")).alias("net_rx_bytes_total"),
        pl.when(pl.col("_i") % 53 == 0).then(float("nan")).otherwise(pl.col("mem_used_bytes")).alias("mem_used_bytes"),
        pl.when(pl.col("_i") % 61 == 0).then(float("inf")).otherwise(pl.col("load_avg_1m")).alias("load_avg_1m"),
        pl.when(pl.col("_i") < 50).then(None).otherwise(pl.col("swap_used_bytes")).alias("swap_used_bytes"),
    ).drop("_i")
    return RawTelemetry(snaps, raw.flows, raw.incidents.clear(), raw.data_source)


def stream_rows(raw: RawTelemetry, pushes: int, seed: int) -> pl.DataFrame:
    """The raw snapshots through StreamCanonical in arrival (time) order, cut into pushes at random."""
    snaps = raw.snapshots.sort("ts_ns", "host", maintain_order=True)
    names = tuple(c for c in snaps.columns if c not in ("host", "ts_ns"))
    hosts = sorted(snaps["host"].unique())
    slots = snaps["host"].replace_strict(hosts, list(range(len(hosts)))).to_numpy()
    ts = snaps["ts_ns"].to_numpy()
    values = snaps.select(names).cast(pl.Float64).fill_null(np.nan).to_numpy()
    stream = StreamCanonical(interval_s=5.0, max_fill_s=60.0)
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, len(ts)), pushes - 1, replace=False))
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, len(ts)]):
        rows = stream.push(slots[lo:hi], ts[lo:hi], stream.raw_matrix(names, values[lo:hi]))
        parts.append(pl.DataFrame(rows.values, schema=stream.names, orient="row").with_columns(
            host=pl.Series(rows.slots).replace_strict(list(range(len(hosts))), hosts), ts_ns=pl.Series(rows.ts_ns)))
    return pl.concat(parts).sort("host", "ts_ns"), dict(zip(COUNT_NAMES, stream.counts.tolist()))


@pytest.mark.parametrize("pushes", [1, 7, 400])
def test_the_stream_gives_the_batch_rows(pushes):
    raw = awkward_fleet()
    batch, report = build_canonical(raw, 5.0, 60.0)
    streamed, counts = stream_rows(raw, pushes, seed=pushes)
    batch = batch.with_columns(ts_ns=pl.col("ts").dt.epoch("ns"))
    assert streamed.select("host", "ts_ns").equals(batch.select("host", "ts_ns"))
    for name in streamed.columns:
        if name in ("host", "ts_ns"):
            continue
        want = batch[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        np.testing.assert_allclose(streamed[name].to_numpy(), want, rtol=1e-12, equal_nan=True, err_msg=name)
    assert counts["merged"] == report.merged_rows
    assert counts["filled_buckets"] == report.filled_buckets and counts["filled_buckets"] > 0
    assert counts["gap_buckets_dropped"] == report.gap_buckets_dropped > 0
    assert counts["first_buckets"] == report.first_buckets_dropped


def test_a_clock_jump_backwards_is_counted_and_skipped():
    stream = StreamCanonical()
    names = ("cpu_idle_pct", "net_rx_bytes_total")
    raw = stream.raw_matrix(names, np.array([[90.0, 0.0], [80.0, 500.0], [70.0, 100.0], [60.0, 1000.0]]))
    rows = stream.push(np.zeros(4, dtype=np.int64), np.array([0, 5, 2, 10]) * NS, raw)
    assert rows.ts_ns.tolist() == [5 * NS, 10 * NS]
    assert stream.counts[COUNT_NAMES.index("out_of_order")] == 1
