"""Compiled per-host loops (Numba) for the features that look back over a host's recent rows.

Every windowed feature of a row is a function of its host's rows in (t − w, t]: a
kernel walks each host's rows in time order and computes them directly, instead of
dozens of separate rolling passes over the whole frame. A live detector runs the same
kernels over a host's buffered recent rows, so batch and stream share one implementation.

Conventions for a kernel (see ``temporal`` for one):

- rows are sorted by host, then time; host ``s`` is the segment
  ``starts[s]:starts[s + 1]`` (``segments``);
- its first arguments are ``(first, last, starts)``: it handles segments
  ``first..last - 1``, so that ``by_hosts`` can give each thread a share of the hosts;
- it writes into output arrays allocated by the caller, one row per feature
  (``out[f, i]``: each feature's values are contiguous, one Polars column each);
- streaming: given ``emit_from`` (per host, its first row to compute; the earlier ones
  are history), it writes only the rows it computes, each host's after the one
  before's (``output_columns``), so nothing is allocated, filled or copied for the
  history; without it, every row, in place;
- it is compiled with ``njit``: cached on disk (compiled once per install), the GIL
  released, and NumPy's rules for floats (x / 0 is inf or NaN, never an exception).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import polars as pl

njit = numba.njit(cache=True, nogil=True, error_model="numpy")
INLINE_ROWS = 20_000  # ``by_hosts`` runs fewer rows in the calling thread


def segments(host: pl.Series) -> np.ndarray:
    """Row offsets of each host's segment in a column sorted by host, ending with its length.

    >>> segments(pl.Series(["a", "a", "b"])).tolist()
    [0, 2, 3]
    """
    changes = (host != host.shift(1)).fill_null(True).arg_true().to_numpy()
    return np.append(changes, len(host)).astype(np.int64)


def emitted_rows(starts: np.ndarray, emit_from: np.ndarray) -> np.ndarray:
    """The row indices from each segment's emit_from to its end (what a kernel computed).

    >>> emitted_rows(np.array([0, 3, 5]), np.array([1, 5])).tolist()
    [1, 2]
    """
    emit_from, shift, computed = output_columns(starts, emit_from)
    return np.repeat(-shift, starts[1:] - emit_from) + np.arange(computed)  # output column c is row c - shift


def output_columns(starts: np.ndarray, emit_from: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(emit_from, shift, columns): per host, the first row to compute (its first row unless given) and what to
    add to a row's index for its output column; and how many columns the output has (the rows computed, in
    the order of ``emitted_rows``).

    >>> emit_from, shift, columns = output_columns(np.array([0, 3, 5]), np.array([1, 5]))
    >>> (emit_from + shift).tolist(), columns
    ([0, 2], 2)
    """
    emit_from = starts[:-1] if emit_from is None else np.asarray(emit_from, dtype=np.int64)
    counts = starts[1:] - emit_from
    first_column = np.cumsum(counts) - counts
    return emit_from, first_column - emit_from, int(counts.sum())


def read_only(values: np.ndarray) -> np.ndarray:
    """values as a read-only C-contiguous float64 view: Polars' zero-copy columns are read-only, and one array type
    for all of a kernel's columns lets them travel as one tuple type (compiled once)."""
    view = np.ascontiguousarray(values, dtype=np.float64).view()
    view.flags.writeable = False
    return view


def by_hosts(kernel, starts: np.ndarray, *args, computed: int | None = None) -> None:
    """kernel(first, last, starts, *args) over every host segment, hosts split over a thread per core.

    Hosts are split into runs of about equal row counts, a few per thread so that one long
    host does not leave a core idle while the other finishes. computed: how many rows the
    kernel computes, when fewer than the segments hold (a stream's new rows after each
    host's history): fewer than ``INLINE_ROWS`` run in the calling thread.
    """
    hosts = len(starts) - 1
    if hosts <= 0:
        return
    # A live micro-batch (its new rows, not the history they are given) is small: handing it to threads costs
    # more than it saves, in CPU and in time alike.
    if (starts[-1] - starts[0] if computed is None else computed) < INLINE_ROWS:
        kernel(0, hosts, starts, *args)
        return
    runs = min(hosts, 4 * (os.cpu_count() or 1))
    # the host at which each run starts: the first whose segment starts past an equal share of the rows
    bounds = np.searchsorted(starts[:-1], np.linspace(0, starts[-1], runs + 1)[1:-1], side="left")
    cuts = np.unique(np.concatenate([[0], bounds, [hosts]]))
    if len(cuts) == 2 or (os.cpu_count() or 1) == 1:
        kernel(0, hosts, starts, *args)
        return
    list(_pool().map(lambda pair: kernel(pair[0], pair[1], starts, *args), zip(cuts[:-1], cuts[1:])))


_threads: ThreadPoolExecutor | None = None
_threads_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool for the process: starting threads on every call cost a live micro-batch more than some kernels.
    (Kernels never call ``by_hosts`` themselves, so sharing it cannot deadlock.)"""
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = ThreadPoolExecutor(max_workers=os.cpu_count(), thread_name_prefix="amoskys-kernel")
        return _threads


def _forget_pool() -> None:
    global _threads, _threads_lock
    _threads, _threads_lock = None, threading.Lock()  # a forked child has the pool's object but not its threads


os.register_at_fork(after_in_child=_forget_pool)
