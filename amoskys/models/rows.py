"""Feature rows as one matrix: how the live path hands a micro-batch to the models, with no Polars frame.

A detector scores a Polars frame (``host``, ``ts``, feature columns) or a ``FeatureRows``.
A live micro-batch has a few hundred rows and ~265 features; built as a frame, it cost a
Series per column (about 8 µs each, whatever its length), which was most of the live
path's fixed cost per micro-batch, only for the models to convert it back to a matrix.

>>> rows = FeatureRows(("a", "b"), {"a": 0, "b": 1}, np.array([[1.0, 2.0], [3.0, np.inf]]), ["h1", "h2"],
...                    np.array([5, 6]))
>>> rows.height, rows.matrix(["b", "a"]).tolist()
(2, [[3.0, 1.0], [nan, 2.0]])
>>> rows[np.array([1])].frame().drop("ts").row(0)
('h2', 2.0, inf)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from amoskys.pipeline.jit import njit


@dataclass(frozen=True)
class FeatureRows:
    names: tuple[str, ...]  # the features, in the order of values' rows
    index: dict[str, int]  # name -> its row of values (built once by the producer, shared by every batch)
    values: np.ndarray  # (features, rows) float64, NaN where missing: feature by feature, as the kernels write
    hosts: list[str]  # per row
    ts_ns: np.ndarray  # per row, int64

    @property
    def height(self) -> int:
        return len(self.hosts)

    def __getitem__(self, rows: np.ndarray) -> FeatureRows:
        """The rows at the positions rows (an integer array), as a frame's ``frame[rows]``."""
        hosts = [self.hosts[i] for i in rows.tolist()]
        return FeatureRows(self.names, self.index, self.values[:, rows], hosts, self.ts_ns[rows])

    def column(self, name: str) -> np.ndarray | None:
        """The feature's values (a view), None when the rows lack it."""
        position = self.index.get(name)
        return None if position is None else self.values[position]

    def matrix(self, names: list[str]) -> np.ndarray:
        """(rows, names) float64 matrix of the features named (each present), row-major as the models take it,
        with non-finite values as NaN (a model's ``_raw``)."""
        out = np.empty((self.height, len(names)))
        _gather_rows(self.values, np.array([self.index[n] for n in names], dtype=np.int64), out)
        return out

    def frame(self) -> pl.DataFrame:
        """The same rows as a frame: host, ts and the features (NaN where missing, never null)."""
        keys = {"host": pl.Series(self.hosts, dtype=pl.String),
                "ts": pl.Series(self.ts_ns, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))}  # fmt: skip
        return pl.DataFrame({**keys, **dict(zip(self.names, self.values))})


Rows = pl.DataFrame | FeatureRows  # what a detector scores


def as_frame(X: Rows) -> pl.DataFrame:
    """X as a frame (for the models that need more than a matrix: the sequence models' host and time)."""
    return X.frame() if isinstance(X, FeatureRows) else X


@njit
def _gather_rows(values, features, out):
    """out[r, j] = values[features[j], r], NaN where not finite: one pass (NumPy's gather, transpose and
    finiteness mask were three, each a temporary of the whole micro-batch)."""
    for r in range(out.shape[0]):
        for j in range(len(features)):
            v = values[features[j], r]
            out[r, j] = v if np.isfinite(v) else np.nan
