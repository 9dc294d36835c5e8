"""Sliding windows over a feature frame for the sequence models: which rows make up each row's window.

A row is scored by the window of ``window`` steps that ends at it: the row itself and the rows
just before it on its host's time grid. A window never crosses hosts and never crosses a time
gap: a host's rows are cut into *segments* of consecutive grid steps, where the host's step is
the median difference between its consecutive timestamps, and any other difference (a gap, a
duplicate timestamp) starts a new segment.

A row without a full window of history (the first rows of a host, or the first rows after a
gap) is not dropped: its window is padded at the front by repeating the segment's earliest row,
as if the host had stood still before it. Every row therefore gets a window and a score, and a
padded window looks like a quiet start rather than like a jump from zeros.

Windows are handed out as row indices, not copied values, so that the (rows, window, features)
array is only ever built one batch at a time.

>>> import datetime as dt
>>> t0 = dt.datetime(2026, 1, 1)
>>> frame = pl.DataFrame({"host": ["a"] * 4 + ["b"] * 2,
...                      "ts": [t0 + dt.timedelta(seconds=s) for s in (0, 5, 10, 20, 0, 5)]})
>>> SequenceWindows.of(frame, window=3).rows(np.arange(6)).tolist()
[[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [4, 4, 4], [4, 4, 5]]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl

from amoskys.errors import InputError


@dataclass(frozen=True)
class SequenceWindows:
    """The window of every row of a frame. Positions count its rows in host-then-time order: the window
    at position p ends at row ``order[p]`` of the frame (the same row when the frame is sorted so)."""

    window: int
    order: np.ndarray  # position -> row of the frame
    segment_start: np.ndarray  # position -> position of the first row of its segment
    host_start: np.ndarray  # position -> position of the first row of its host
    host_end: np.ndarray  # position -> one past the position of the last row of its host

    @classmethod
    def of(cls, frame: pl.DataFrame, window: int) -> SequenceWindows:
        """The windows of frame's rows (any row order; ``host`` and ``ts`` must be set on every row)."""
        if missing := [c for c in ("host", "ts") if c not in frame.columns]:
            raise InputError(f"sequence models need the columns host and ts; the input lacks {', '.join(missing)}")
        if frame.select(pl.col("host").is_null().any() | pl.col("ts").is_null().any()).item():
            raise InputError("sequence models need host and ts on every row; the input has nulls there")
        if not (frame.schema["ts"].is_temporal() or frame.schema["ts"].is_integer()):
            raise InputError(f"sequence models need ts as a date-time; the input's is {frame.schema['ts']}")
        keys = (
            frame.select("host", time=pl.col("ts").to_physical())
            .with_row_index("row")
            .sort("host", "time", maintain_order=True)
        )
        new_host = (pl.col("host") != pl.col("host").shift(1)).fill_null(True)
        step = pl.when(~new_host).then(pl.col("time").diff())
        starts = keys.select(
            "row",
            new_host=new_host,
            # A host with a single row has no step: new_host alone starts its one segment.
            new_segment=new_host | (step != step.filter(step > 0).median().over("host")).fill_null(True),
        )
        positions = np.arange(keys.height)
        new_segment = starts["new_segment"].to_numpy()
        new_host = starts["new_host"].to_numpy()
        host_start = np.maximum.accumulate(np.where(new_host, positions, 0))
        host_sizes = np.diff(np.append(np.flatnonzero(new_host), keys.height))
        return cls(
            window=window,
            order=starts["row"].to_numpy().astype(np.int64),
            segment_start=np.maximum.accumulate(np.where(new_segment, positions, 0)),
            host_start=host_start,
            host_end=host_start + np.repeat(host_sizes, host_sizes),
        )

    def __len__(self) -> int:
        return len(self.order)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """(len(positions), window) frame rows, oldest first, of the windows ending at positions; front-padded."""
        steps = positions[:, None] - (self.window - 1) + np.arange(self.window)
        return self.order[np.maximum(steps, self.segment_start[positions][:, None])]

    def batches(self, values: np.ndarray, positions: np.ndarray, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, windows) in chunks of size: the (chunk, window, features) values of the windows ending there."""
        for start in range(0, len(positions), size):
            chunk = positions[start : start + size]
            yield chunk, values[self.rows(chunk)]

    def training_split(self, held_out: float, max_windows: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Positions of the training windows and of the validation windows, at most max_windows in all.

        Validation is each host's last ``held_out`` share of windows by time, not a random sample:
        neighbouring windows overlap, so a random hold-out would be near copies of training windows
        and tell nothing about overfitting. Above max_windows, both parts are thinned by the same
        fraction, sampled with rng.
        """
        positions = np.arange(len(self))
        tail_sizes = np.floor((self.host_end - self.host_start) * held_out).astype(np.int64)
        in_tail = positions >= self.host_end - tail_sizes
        parts = positions[~in_tail], positions[in_tail]
        fraction = min(1.0, max_windows / max(1, len(self)))
        return tuple(np.sort(rng.choice(part, round(len(part) * fraction), replace=False)) for part in parts)
