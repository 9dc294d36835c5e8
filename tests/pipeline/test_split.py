"""The time split: per host, the first train_fraction of its time range is train, in order, never shuffled."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from amoskys.errors import InputError
from amoskys.pipeline.split import split_bounds, split_by_time, split_slices, train_mask

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def tiny() -> pl.DataFrame:
    """Host a: 11 rows, 0..100 s every 10 s. Host b: 4 rows over 7..13 s, later start and shorter range."""
    rows = [("a", at(10 * i), float(i)) for i in range(11)] + [("b", at(s), float(s)) for s in (7, 9, 12, 13)]
    return pl.DataFrame(rows, schema={"host": pl.String, "ts": pl.Datetime("ns", "UTC"), "x": pl.Float64}, orient="row")


def test_each_host_is_cut_at_its_own_time_fraction():
    train, val = split_by_time(tiny(), 0.8)
    # a: 0 + 0.8 * 100 = 80 s, and 80 itself is validation (strictly before is train).
    assert train.filter(pl.col("host") == "a")["ts"].to_list() == [at(10 * i) for i in range(8)]
    assert val.filter(pl.col("host") == "a")["ts"].to_list() == [at(80), at(90), at(100)]
    # b: 7 + 0.8 * 6 = 11.8 s.
    assert train.filter(pl.col("host") == "b")["ts"].to_list() == [at(7), at(9)]
    assert val.filter(pl.col("host") == "b")["ts"].to_list() == [at(12), at(13)]


def test_bounds_name_the_cut_and_count_the_rows():
    bounds = split_bounds(tiny(), 0.8)
    assert bounds.to_dicts() == [
        {"host": "a", "train_end": at(80), "train_rows": 8, "validation_rows": 3},
        {"host": "b", "train_end": at(11.8), "train_rows": 2, "validation_rows": 2},
    ]


def test_order_is_kept_and_nothing_is_lost_or_shuffled():
    frame = tiny()
    train, val = split_by_time(frame, 0.5)
    assert train.columns == frame.columns and val.columns == frame.columns
    assert pl.concat([train, val]).sort("host", "ts").equals(frame)
    for part in (train, val):
        assert part.equals(part.sort("host", "ts", maintain_order=True))
    for host in ("a", "b"):
        assert train.filter(pl.col("host") == host)["ts"].max() < val.filter(pl.col("host") == host)["ts"].min()


def test_a_single_row_host_goes_to_train():
    frame = pl.concat([tiny(), pl.DataFrame({"host": ["c"], "ts": [at(50)], "x": [1.0]}, schema=tiny().schema)])
    train, val = split_by_time(frame, 0.8)
    assert train.filter(pl.col("host") == "c").height == 1 and val.filter(pl.col("host") == "c").height == 0
    assert split_bounds(frame, 0.8).filter(pl.col("host") == "c")["train_rows"].item() == 1


def test_the_cut_depends_on_time_only():
    frame = tiny()
    garbage = frame.with_columns(x=pl.col("x") * -1e12)
    assert split_bounds(garbage, 0.8).equals(split_bounds(frame, 0.8))
    assert split_by_time(garbage, 0.8)[0]["ts"].equals(split_by_time(frame, 0.8)[0]["ts"])


def test_an_empty_frame_splits_into_two_empty_frames():
    train, val = split_by_time(tiny().clear(), 0.8)
    assert train.height == val.height == 0 and train.schema == tiny().schema


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_fraction_outside_0_1_is_an_input_error(fraction):
    with pytest.raises(InputError, match="train_fraction must be between 0 and 1"):
        split_by_time(tiny(), fraction)
    with pytest.raises(InputError):
        split_bounds(tiny(), fraction)


def test_split_slices_gives_what_split_by_time_gives(simulated_split):
    frame = simulated_split.canonical
    train, validation = split_by_time(frame, 0.8)
    sliced = split_slices(frame, train_mask(frame, 0.8))
    assert sliced[0].equals(train) and sliced[1].equals(validation)
    assert sliced[0].n_chunks() == frame["host"].n_unique()  # views of frame: a slice per host


def test_split_slices_refuses_rows_out_of_time_order(simulated_split):
    frame = simulated_split.canonical
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=1).sort("host", maintain_order=True)
    with pytest.raises(InputError, match="together and in time order"):
        split_slices(shuffled, train_mask(shuffled, 0.8))
