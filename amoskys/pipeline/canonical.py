"""Stage 1, canonical: raw snapshots to one row per host per interval.

Snapshots are put in fixed buckets of ``interval_s`` per host (the first snapshot of a
bucket is the bucket, so duplicates merge away: a live detector can then score a
bucket as soon as its snapshot arrives, see ``detect.canonical``), counters become
per-second rates (a counter that goes down has wrapped at 2**32 or 2**64 when it was
near that, and was reset otherwise), gauges are kept as they are, and the buckets are
filled into a regular grid:

- a bucket with no snapshot, up to ``max_fill_s`` after the last one, repeats the last
  values (forward fill: causal, as a live detector must be); buckets further into a
  gap are not invented but dropped and counted;
- NaN and infinite values count as missing; a metric a host never reports is filled
  with 0; either way ``imputed_features`` counts the features of the row that were
  filled;
- a host's first bucket has no rates yet and is dropped, so a host with a single
  bucket drops out (counted).

The result has ``host``, ``ts`` (UTC), ``label`` and ``incident`` (from the labeled
incident windows; 0 and null without them), then the canonical features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from amoskys.pipeline.features import CANONICAL, Feature, same_host
from amoskys.pipeline.source import RawTelemetry
from amoskys.telemetry import catalogue

NS = 1_000_000_000
_WRAP_32 = 2**32
_CPU_MODES = ("user", "system", "idle", "iowait")


def rate_name(counter: str) -> str:
    """``net_rx_bytes_total`` -> ``net_rx_bytes_per_s``."""
    return counter.removesuffix("_total") + "_per_s"


def _rate_unit(metric: catalogue.Metric) -> str:
    return "bytes/s" if metric.unit == "bytes" else "1/s"


GAUGES = tuple(m for m in catalogue.HOST_METRICS if m.kind == catalogue.GAUGE and not m.per_core)
COUNTERS = tuple(m for m in catalogue.HOST_METRICS if m.kind == catalogue.COUNTER)


def canonical_features(optional: tuple[str, ...] = ()) -> list[Feature]:
    """Stage-1 declarations; ``optional`` names the optional catalogue gauges (sensors) the data has."""
    gauges = GAUGES + tuple(catalogue.BY_NAME[name] for name in optional)
    features = [Feature(m.name, CANONICAL, m.unit, m.description, (m.name,)) for m in gauges]
    features += [
        Feature(rate_name(m.name), CANONICAL, _rate_unit(m), f"Per-second rate of: {m.description[0].lower()}"
                f"{m.description[1:]}", (m.name,))  # fmt: skip
        for m in COUNTERS
    ]
    features += [
        Feature("cpu_busy_pct", CANONICAL, "percent", "Share of all cores not idle (100 - cpu_idle_pct).",
                ("cpu_idle_pct",)),  # fmt: skip
        Feature("cpu_core_max_busy_pct", CANONICAL, "percent", "Busy share of the busiest core.",
                ("cpu_core{n}_idle_pct",)),  # fmt: skip
        Feature("cpu_core_spread_pct", CANONICAL, "percent",
                "Busy share of the busiest core minus that of the idlest: one pinned core shows here first.",
                ("cpu_core{n}_idle_pct",)),  # fmt: skip
        Feature("imputed_features", CANONICAL, "count",
                "Canonical features of this row that were filled in (gap forward-filled, NaN/inf, or never reported).",
                ("*",)),  # fmt: skip
    ]
    return features


@dataclass
class CanonicalReport:
    """What stage 1 had to fix or leave out, for the summary."""

    raw_rows: int = 0
    merged_rows: int = 0  # snapshots that shared a bucket with another
    nonfinite_values: int = 0
    filled_buckets: int = 0
    gap_buckets_dropped: int = 0
    first_buckets_dropped: int = 0
    hosts_dropped: list[str] = field(default_factory=list)  # fewer than two buckets
    metrics_never_reported: dict[str, list[str]] = field(default_factory=dict)  # host -> metrics filled with 0


def build_canonical(raw: RawTelemetry, interval_s: float, max_fill_s: float) -> tuple[pl.DataFrame, CanonicalReport]:
    report = CanonicalReport(raw_rows=raw.snapshots.height)
    step = int(round(interval_s * NS))
    optional = present_optional_metrics(raw.snapshots)
    names = [f.name for f in canonical_features(optional) if f.name != "imputed_features"]
    host_names = [n for n in names if n not in optional]
    snapshots, report.nonfinite_values = _finite_metrics(raw.snapshots, optional)
    metric_columns = [c for c in snapshots.columns if c not in ("host", "ts_ns")]
    buckets = snapshots.with_columns(bucket=pl.col("ts_ns") // step * step)
    # The store and the simulator give sorted rows; otherwise the keys alone are sorted first, and all rows
    # moved once, after the per-core columns are gone when there is nothing to merge.
    keys = buckets.select("host", "ts_ns", "bucket")
    order = None if _sorted_by_host_and_time(keys) else keys.select(pl.arg_sort_by("host", "ts_ns")).to_series()
    if _shares_buckets(keys if order is None else keys[order]):
        # Merging costs a group-by, so only when there is something to merge.
        buckets = buckets if order is None else buckets[order]
        merged = buckets.group_by("host", "bucket", maintain_order=True).agg(pl.col(metric_columns).first())
        buckets = _derive(merged)
    else:
        buckets = _derive(buckets)
        buckets = buckets if order is None else buckets[order]
    report.merged_rows = snapshots.height - buckets.height
    # A host's first bucket has no previous one to take rates from.
    observed = buckets.lazy().with_columns(_rates(step)).filter(same_host()).collect()
    report.first_buckets_dropped = buckets.select(pl.col("host").n_unique()).item() if buckets.height else 0
    report.hosts_dropped = sorted(set(buckets["host"].unique()) - set(observed["host"].unique()))

    grid = observed.select("host", "bucket", *names)
    if grid.select((same_host() & (pl.col("bucket").diff() != step)).any()).item():
        grid = _fill_gaps(grid, step, int(max_fill_s * NS) // step * step, report)
    # Only columns with a null have anything to count, forward fill or report as never reported.
    nullable = [c for c, n in zip(grid.columns, grid.null_count().row(0)) if n and c in names]
    host_nullable = [c for c in host_names if c in nullable]
    if host_nullable:
        never = grid.group_by("host").agg(pl.col(host_nullable).is_not_null().any())
        for row in never.iter_rows(named=True):
            missing = [n for n in host_nullable if not row[n]]
            if missing:
                report.metrics_never_reported[row["host"]] = missing
    imputed = pl.sum_horizontal(pl.col(host_nullable).is_null()).cast(pl.Float64) if host_nullable else pl.lit(0.0)
    # Optional sensor metrics stay null on hosts without the sensor: 0 would be a reading.
    frame = (
        grid.with_columns(imputed_features=imputed)
        .with_columns(pl.col(nullable).forward_fill().over("host"))
        .with_columns(pl.col(host_nullable).fill_null(0.0))
        .with_columns(ts=pl.from_epoch("bucket", time_unit="ns").dt.replace_time_zone("UTC"))
    )
    # Rows are still sorted by host, then time.
    return _labels(frame, raw.incidents).select("host", "ts", "label", "incident", *names, "imputed_features"), report


def present_optional_metrics(snapshots: pl.DataFrame) -> tuple[str, ...]:
    """The optional catalogue metrics that some snapshot has a value for."""
    return tuple(
        m.name for m in catalogue.METRICS
        if m.optional and m.name in snapshots.columns and snapshots[m.name].is_not_null().any()
    )  # fmt: skip


def _finite_metrics(snapshots: pl.DataFrame, optional: tuple[str, ...]) -> tuple[pl.DataFrame, int]:
    """Every host metric column present (null where never reported) and the per-core idle shares, as float64
    with NaN and infinities made null; and how many values were not finite, in every per-core column too."""
    wanted = [m.name for m in GAUGES + COUNTERS] + list(optional)
    cores = [c for c in snapshots.columns if (metric := catalogue.lookup(c)) is not None and metric.per_core]
    present = set(snapshots.columns)
    as_float = [
        pl.col(c).cast(pl.Float64) if c in present else pl.lit(None, dtype=pl.Float64).alias(c) for c in wanted + cores
    ]
    frame = snapshots.select("host", pl.col("ts_ns").cast(pl.Int64), *as_float)
    # A sum is finite exactly when no value is NaN or infinite (or it overflowed): count only in the other columns.
    sums = frame.select(pl.col(wanted + cores).sum()).row(0)
    suspects = [c for c, total in zip(wanted + cores, sums) if not np.isfinite(total)]
    counts = dict.fromkeys(wanted + cores, 0)
    if suspects:
        counts.update(zip(suspects, frame.select((~pl.col(suspects).is_finite()).sum()).row(0)))
    # Only the idle shares of the cores are used (by _derive); only columns with a non-finite value need a pass.
    kept = wanted + [c for c in cores if c.endswith("_idle_pct")]
    finite = [pl.when(pl.col(c).is_finite()).then(pl.col(c)).alias(c) if counts[c] else pl.col(c) for c in kept]
    return frame.select("host", "ts_ns", *finite), sum(counts.values())


def _derive(buckets: pl.DataFrame) -> pl.DataFrame:
    """The CPU busy shares, of all cores, of the busiest core, and its spread; without the per-core columns."""
    idle = [c for c in buckets.columns if c.startswith("cpu_core") and c.endswith("_idle_pct")]
    derived = [(100.0 - pl.col("cpu_idle_pct")).alias("cpu_busy_pct")]
    if idle:
        # numpy's fmin and fmax (which skip NaN, here the nulls) are several times faster than min/max_horizontal.
        # 100 - x never increases with x, so 100 - min(idle) is exactly the largest 100 - idle.
        as_nan = buckets.select(pl.col(idle).fill_null(np.nan))
        cores = [as_nan[c].to_numpy() for c in idle]
        least, most = cores[0].copy(), cores[0].copy()
        for core in cores[1:]:
            np.fmin(least, core, out=least)
            np.fmax(most, core, out=most)
        busiest, idlest = 100.0 - least, 100.0 - most
        derived += [
            pl.Series("cpu_core_max_busy_pct", busiest).fill_nan(None),
            pl.Series("cpu_core_spread_pct", busiest - idlest).fill_nan(None),
        ]
    else:
        derived += [pl.lit(None, dtype=pl.Float64).alias(n) for n in ("cpu_core_max_busy_pct", "cpu_core_spread_pct")]
    return buckets.with_columns(derived).drop(idle)


def _sorted_by_host_and_time(frame: pl.DataFrame) -> bool:
    host, ts = pl.col("host"), pl.col("ts_ns")
    later = (host > host.shift(1)) | ((host == host.shift(1)) & (ts >= ts.shift(1)))
    return bool(frame.select(later.slice(1).all()).item()) if frame.height > 1 else True


def _shares_buckets(frame: pl.DataFrame) -> bool:
    """Whether two rows of a host (sorted by host and time) fall in one bucket."""
    same = (pl.col("host") == pl.col("host").shift(1)) & (pl.col("bucket") == pl.col("bucket").shift(1))
    return bool(frame.select(same.any()).item())




def _rates(step: int) -> list[pl.Expr]:
    """Per-second rates of every counter since the previous row, which is the same host's previous bucket
    (rows sorted by host, time) except on a host's first row: its rates are wrong and it must be dropped."""
    seconds = (pl.col("bucket") - pl.col("bucket").shift(1)) / NS
    exprs = []
    for metric in COUNTERS:
        value, previous = pl.col(metric.name), pl.col(metric.name).shift(1)
        delta = value - previous
        # A counter that went down wrapped if it was near 2**32 or 2**64, else it was reset to 0.
        wrap = pl.when(previous >= 0.75 * 2.0**64).then(2.0**64).when(previous.is_between(0.75 * _WRAP_32, _WRAP_32)).then(
            float(_WRAP_32)
        )  # fmt: skip
        increase = pl.when(delta >= 0).then(delta).otherwise(pl.coalesce(wrap - previous + value, value))
        exprs.append((increase / seconds).alias(rate_name(metric.name)))
    return exprs


def _fill_gaps(observed: pl.DataFrame, step: int, max_fill_ns: int, report: CanonicalReport) -> pl.DataFrame:
    """Every bucket from each host's first to its last observed one, except those more than ``max_fill_ns`` after
    the last observed one; the missing buckets kept have null metrics (rows sorted by host, time)."""
    spans = observed.group_by("host").agg(first=pl.col("bucket").min(), last=pl.col("bucket").max())
    grid = (
        spans.select("host", bucket=pl.int_ranges("first", pl.col("last") + step, step))
        .explode("bucket")
        .sort("host", "bucket")
        .join(observed.with_columns(_seen=pl.lit(True)), on=["host", "bucket"], how="left", maintain_order="left")
        .with_columns(pl.col("_seen").fill_null(False))
    )
    last_seen = pl.when(pl.col("_seen")).then(pl.col("bucket")).forward_fill().over("host")
    fillable = (pl.col("bucket") - last_seen) <= max_fill_ns
    report.filled_buckets = grid.filter(~pl.col("_seen") & fillable).height
    report.gap_buckets_dropped = grid.filter(~fillable).height
    return grid.filter(fillable).drop("_seen")


def _labels(frame: pl.DataFrame, incidents: pl.DataFrame) -> pl.DataFrame:
    """label 1 and the incident kind on rows inside a labeled window of their host."""
    if incidents.height == 0:
        return frame.with_columns(label=pl.lit(0, dtype=pl.Int8), incident=pl.lit(None, dtype=pl.String))
    windows = incidents.sort("start_ns").select("host", bucket="start_ns", _end="end_ns", _kind="kind")
    # frame is sorted by host, then time: sorted on "bucket" within each "by" group, which is what join_asof needs
    # The join keeps the rows in order, one per row of frame: joining only the keys spares copying the metrics.
    joined = frame.select("host", "bucket").join_asof(
        windows, on="bucket", by="host", strategy="backward", check_sortedness=False
    )
    inside = pl.col("bucket") < pl.col("_end")
    labels = joined.select(label=inside.fill_null(False).cast(pl.Int8), incident=pl.when(inside).then(pl.col("_kind")))
    return frame.hstack(labels)
