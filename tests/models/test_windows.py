"""Sliding windows for the sequence models: never across hosts or time gaps, padded for warm-up rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from amoskys.errors import InputError
from amoskys.models.windows import SequenceWindows

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def frame_of(steps: dict[str, list[int]], step_s: int = 5, **step_by_host: int) -> pl.DataFrame:
    """One row per (host, grid step); ``value`` numbers the rows 0, 1, 2, ... in the given order."""
    hosts = [host for host, host_steps in steps.items() for _ in host_steps]
    times = [T0 + timedelta(seconds=step_by_host.get(host, step_s) * k) for host, ks in steps.items() for k in ks]
    return pl.DataFrame({"host": hosts, "ts": times, "value": np.arange(len(hosts), dtype=np.float64)})


def windows_of(frame: pl.DataFrame, window: int) -> list[list[int]]:
    """Each row's window as row numbers of frame, oldest first, for the rows in frame's order."""
    windows = SequenceWindows.of(frame, window)
    rows = windows.rows(np.arange(frame.height))  # by position: host, then time
    return rows[np.argsort(windows.order)].tolist()


def test_windows_stop_at_hosts_and_gaps_and_repeat_the_first_row_of_a_segment():
    # host a: steps 0-4, a gap, steps 8-9; host b: steps 0-3 on its own 10 s grid
    frame = frame_of({"a": [0, 1, 2, 3, 4, 8, 9], "b": [0, 1, 2, 3]}, b=10)
    assert windows_of(frame, 3) == [
        [0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],  # a, first segment
        [5, 5, 5], [5, 5, 6],  # a after the gap: padded again, nothing from before the gap
        [7, 7, 7], [7, 7, 8], [7, 8, 9], [8, 9, 10],  # b: never a row of a
    ]  # fmt: skip


def test_windows_hold_the_values_of_their_rows():
    frame = frame_of({"a": [0, 1, 2, 3, 4, 8, 9], "b": [0, 1, 2, 3]}, b=10)
    windows = SequenceWindows.of(frame, 3)
    values = frame["value"].to_numpy()[:, None]
    [(positions, batch)] = list(windows.batches(values, np.arange(frame.height), size=100))
    assert batch.shape == (frame.height, 3, 1)
    assert batch[:, :, 0].tolist() == values[windows.rows(positions), 0].tolist()
    assert [len(chunk) for chunk, _ in windows.batches(values, np.arange(frame.height), size=4)] == [4, 4, 3]


def test_row_order_does_not_change_any_row_s_window():
    frame = frame_of({"a": [0, 1, 2, 3, 4, 8, 9], "b": [0, 1, 2, 3]}, b=10)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    value = shuffled["value"].cast(pl.Int64).to_list()
    by_value = {value[row]: [value[r] for r in rows] for row, rows in enumerate(windows_of(shuffled, 3))}
    assert [by_value[v] for v in range(frame.height)] == windows_of(frame, 3)
    assert SequenceWindows.of(shuffled, 3).order.tolist() == np.argsort(value).tolist()


def test_a_duplicate_timestamp_and_a_single_row_host_start_their_own_segments():
    frame = frame_of({"a": [0, 1, 1, 2], "c": [0]})
    assert windows_of(frame, 2) == [[0, 0], [0, 1], [2, 2], [2, 3], [4, 4]]


def test_a_long_window_pads_a_short_host_entirely():
    assert windows_of(frame_of({"a": [0, 1]}), 4) == [[0, 0, 0, 0], [0, 0, 0, 1]]


def test_training_split_holds_out_each_host_s_last_windows_by_time():
    frame = frame_of({"a": list(range(20)), "b": list(range(10)), "c": list(range(5))})
    windows = SequenceWindows.of(frame, 3)
    train, validation = windows.training_split(0.1, max_windows=1000, rng=np.random.default_rng(0))
    assert validation.tolist() == [18, 19, 29]  # a's last 2 and b's last 1; c is too short to give one
    assert sorted([*train, *validation]) == list(range(frame.height))


def test_training_split_thins_both_parts_to_max_windows():
    frame = frame_of({"a": list(range(500)), "b": list(range(500))})
    windows = SequenceWindows.of(frame, 3)
    train, validation = windows.training_split(0.1, max_windows=100, rng=np.random.default_rng(0))
    assert (len(train), len(validation)) == (90, 10)
    assert set(train).isdisjoint(validation) and all(p % 500 >= 450 for p in validation)
    again = windows.training_split(0.1, max_windows=100, rng=np.random.default_rng(0))
    assert train.tolist() == again[0].tolist() and validation.tolist() == again[1].tolist()


def test_an_empty_frame_has_no_windows():
    windows = SequenceWindows.of(frame_of({"a": [0]}).head(0), 3)
    assert len(windows) == 0 and windows.rows(np.arange(0)).shape == (0, 3)


@pytest.mark.parametrize(
    "frame, message",
    [
        (pl.DataFrame({"host": ["a"], "value": [1.0]}), "lacks ts"),
        (pl.DataFrame({"ts": [T0], "value": [1.0]}), "lacks host"),
        (pl.DataFrame({"host": ["a", None], "ts": [T0, T0]}), "nulls"),
        (pl.DataFrame({"host": ["a", "a"], "ts": [T0, None]}), "nulls"),
    ],
)
def test_frames_without_host_or_time_are_refused_in_one_line(frame, message):
    with pytest.raises(InputError, match=message):
        SequenceWindows.of(frame, 3)


def test_a_time_column_of_text_is_refused():
    with pytest.raises(InputError, match="date-time"):
        SequenceWindows.of(pl.DataFrame({"host": ["a"], "ts": ["2026-01-01"]}), 3)
