"""The leakage-free split: each host's time range is cut once, early part train, the rest validation.

The cut depends on timestamps only, never on values or labels, so changing a
validation row can never move a row across it. For each host with first and last
timestamps ``first`` and ``last``, a row is training data when

    ts < first + train_fraction * (last - first)

and validation data otherwise: every training row of a host comes before all of its
validation rows, and nothing is shuffled. A host with a single row has no time range
to cut; it goes to training (it cannot be validated against its own past).

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> frame = pl.DataFrame({"host": ["a"] * 5, "ts": [t0 + timedelta(seconds=10 * i) for i in range(5)]})
>>> train, validation = split_by_time(frame, 0.8)
>>> train.height, validation.height
(4, 1)
"""

from __future__ import annotations

import numpy as np
import polars as pl

from amoskys.errors import InputError
from amoskys.pipeline.jit import segments


def split_bounds(frame: pl.DataFrame, train_fraction: float) -> pl.DataFrame:
    """One row per host: ``train_end`` (exclusive: rows before it are training) and the row counts.

    A single-row host's ``train_end`` is one nanosecond after its row, so the bound
    alone says where every row goes.
    """
    counts = (
        _marked(frame, train_fraction)
        .group_by("host", maintain_order=True)
        .agg(train_end=pl.col("_end").first(), train_rows=pl.col("_train").sum(),
             validation_rows=(~pl.col("_train")).sum())  # fmt: skip
    )
    return counts.with_columns(pl.from_epoch("train_end", time_unit="ns").dt.replace_time_zone("UTC"))


def split_by_time(frame: pl.DataFrame, train_fraction: float) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, validation): each host's rows before its ``train_end``, and the rest, in the frame's order."""
    marked = _marked(frame, train_fraction).drop("_end")
    return marked.filter("_train").drop("_train"), marked.filter(~pl.col("_train")).drop("_train")


def train_mask(frame: pl.DataFrame, train_fraction: float) -> pl.Series:
    """Which rows of frame ``split_by_time`` puts in train."""
    return _marked(frame.select("host", "ts"), train_fraction)["_train"]


def split_slices(frame: pl.DataFrame, mask: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, validation) of frame, as views of it: no value is copied.

    frame holds each host's rows together and in time order, and mask is ``train_mask``'s,
    so each host's training rows are the first of its rows: train is a slice per host,
    and so is validation (one chunk per host in each). Filtering a wide frame would copy
    every value, which took longer than stage 5 itself on 1M rows.
    """
    starts = segments(frame["host"])
    is_train = mask.to_numpy()
    same_host = np.ones(len(is_train), dtype=bool)
    same_host[starts[:-1]] = False
    if np.any(is_train[1:] & ~is_train[:-1] & same_host[1:]):
        raise InputError("split_slices needs each host's rows together and in time order")
    counted = np.concatenate([[0], np.cumsum(is_train)])
    parts = [(start, end, counted[end] - counted[start]) for start, end in zip(starts[:-1], starts[1:])]
    train = [frame.slice(start, n) for start, _, n in parts]
    validation = [frame.slice(start + n, end - start - n) for start, end, n in parts]
    return (pl.concat(train, rechunk=False) if train else frame.clear(),
            pl.concat(validation, rechunk=False) if validation else frame.clear())  # fmt: skip


def _marked(frame: pl.DataFrame, train_fraction: float) -> pl.DataFrame:
    """frame with each host's bound ``_end`` (epoch ns) and ``_train`` (the row is before it)."""
    if not 0.0 < train_fraction < 1.0:
        raise InputError(f"train_fraction must be between 0 and 1 (both excluded), got {train_fraction!r}")
    ns = pl.col("ts").dt.epoch("ns")
    first, last = ns.min().over("host"), ns.max().over("host")
    # ts < first + f * span  <=>  ts < first + ceil(f * span) for integer ns, so the bound is exact.
    offset = (train_fraction * (last - first)).ceil().cast(pl.Int64)
    end = pl.when(last == first).then(last + 1).otherwise(first + offset)
    return frame.with_columns(_end=end).with_columns(_train=ns < pl.col("_end"))

