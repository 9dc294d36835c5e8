"""Stage 5's outlier statistics, compiled: robust baselines, local outlier factor, isolation forest.

- ``median_mad_scale``: median, MAD and the robust-z scale of the finite values of
  each (host, metric) segment of the training rows (see ``anomaly`` for the scale).
  Medians are exact (quickselect, no sort); an even count takes Polars' midpoint,
  lower + (upper − lower) × 0.5, so the values equal Polars' ``median()`` bit for bit.
- ``Lof``: sklearn's novelty local outlier factor (``LocalOutlierFactor(novelty=True)``,
  ``-score_samples``) of rows against a fixed reference, with exact float64 distances.
  Of reference rows at equal squared distance, the lowest index is the nearer neighbour
  (sklearn's brute-force search keeps the first found, too).
- ``Forest``: a fitted sklearn ``IsolationForest``'s trees as flat arrays, scored as its
  ``-score_samples`` computes it: per tree, the leaf's depth plus c(samples at the leaf),
  summed over the trees in order; the score is 2 ** (−sum / (trees × c(max_samples))).
  Rows are compared in float32, as sklearn's trees do.

Scores need no history: each row is scored alone, so a live detector scores only its
new rows, with the same fitted objects. Rows are cut into blocks of ``_BLOCK`` that
``by_hosts`` spreads over a thread per core (a row's score never depends on its block).
"""

from __future__ import annotations

import math

import numpy as np

from amoskys.pipeline.jit import by_hosts, njit

SCALE_FLOOR = 0.01  # robust z's scale is at least this share of max(1, |median|) (see ``anomaly``)
_BLOCK = 4096  # rows per block: the unit of work of a thread
_LANES = 16  # interleaved lanes of a row's reference distances, whose minima bound its k-th nearest


class Lof:
    """Novelty local outlier factor of rows against a fixed reference (k neighbours)."""

    def __init__(self, reference: np.ndarray, k: int):
        self.k = k
        self.reference_t = np.ascontiguousarray(reference.T)  # a metric's values over the reference, contiguous
        neighbours = np.empty((len(reference), k), dtype=np.int64)
        squared = np.empty((len(reference), k))
        _reference_neighbours(self.reference_t, neighbours, squared)
        near = np.sqrt(squared)
        self.k_distance = near[:, -1]
        self.lrd = 1.0 / (np.maximum(near, self.k_distance[neighbours]).mean(axis=1) + 1e-10)
        self.training_scores = self.lrd[neighbours].mean(axis=1) / self.lrd

    def score(self, x: np.ndarray) -> np.ndarray:
        """LOF of each row of x: about 1 typical, higher = more anomalous."""
        _check_width(x, self.reference_t.shape[0])
        out = np.empty(len(x))
        _by_rows(_lof_rows, len(x), x, self.reference_t, self.k_distance, self.lrd, self.k, out)
        return out


class Forest:
    """The trees of a fitted sklearn IsolationForest (trained on all features), as flat arrays.

    Nodes of all trees are numbered one after the other (tree t's root is ``roots[t]``);
    node n's children are ``children[2n]`` (x <= threshold) and ``children[2n + 1]``.
    """

    def __init__(self, iforest):
        trees = [estimator.tree_ for estimator in iforest.estimators_]
        self.width = iforest.n_features_in_
        offsets = np.cumsum([0] + [tree.node_count for tree in trees])
        self.roots = offsets[:-1].astype(np.uint32)
        # A leaf is its own child: every walk then takes the same number of steps.
        self.children = np.repeat(np.arange(offsets[-1], dtype=np.uint32), 2)
        self.feature = np.zeros(offsets[-1], dtype=np.uint32)
        self.threshold = np.zeros(offsets[-1], dtype=np.float32)
        self.path = np.zeros(offsets[-1])  # at a leaf: depth + c(samples), as sklearn adds it up
        for tree, offset in zip(trees, offsets):
            split = np.flatnonzero(tree.children_left >= 0)
            node = offset + split
            self.children[2 * node] = offset + tree.children_left[split]
            self.children[2 * node + 1] = offset + tree.children_right[split]
            self.feature[node], self.threshold[node] = tree.feature[split], _float32_below(tree.threshold[split])
            depth = tree.compute_node_depths()  # the root's is 1
            self.path[offset:offset + tree.node_count] = depth + _average_path_length(tree.n_node_samples) - 1.0
        self.steps = max(tree.max_depth for tree in trees)
        self.denominator = len(trees) * float(_average_path_length(np.array([iforest.max_samples_]))[0])

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score of each row of x (no NaN): 0-1, higher = more anomalous."""
        _check_width(x, self.width)
        out = np.empty(len(x))
        arrays = (self.roots, self.children, self.feature, self.threshold, self.path)
        _by_rows(_forest_rows, len(x), x, *arrays, self.steps, self.denominator, out)
        return out


def median_mad_scale(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """out[:, j, s]: median, MAD and scale of the finite values of values[starts[s]:starts[s + 1], j].

    NaN where a segment has no finite value.
    """
    rows, columns = values.shape
    flat = values.T.ravel()  # column after column (no copy when values is column-major)
    flat_starts = np.append((np.arange(columns)[:, None] * rows + starts[:-1]).ravel(), rows * columns)
    out = np.empty((3, columns * (len(starts) - 1)))
    by_hosts(_median_mad_scale, flat_starts, flat, out)
    return out.reshape(3, columns, len(starts) - 1)


def _by_rows(kernel, rows: int, *args) -> None:
    """kernel(first, last, starts, *args) over rows 0..rows - 1 in blocks of _BLOCK, a share of them per thread."""
    by_hosts(kernel, np.append(np.arange(0, rows, _BLOCK), rows).astype(np.int64), *args)


def _check_width(x: np.ndarray, width: int) -> None:
    """The kernels read width values per row, unchecked: x must have them."""
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"rows of {width} values expected, got an array of shape {x.shape}")


def _float32_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each threshold: for a float32 x, x <= threshold exactly when x <= this."""
    below = threshold.astype(np.float32)
    above = below.astype(np.float64) > threshold
    below[above] = np.nextafter(below[above], np.float32(-np.inf))
    return below


def _average_path_length(samples: np.ndarray) -> np.ndarray:
    """c(n): mean depth of an unsuccessful search in a binary search tree of n keys (sklearn's formula)."""
    n = samples.astype(np.float64)
    out = np.where(n == 2, 1.0, 0.0)
    more = n > 2
    out[more] = 2.0 * (np.log(n[more] - 1.0) + np.euler_gamma) - 2.0 * (n[more] - 1.0) / n[more]
    return out


@njit
def _squared_distances(x, i, reference_t, out):
    """out[r] = squared distance from row i of x to reference row r (columns of reference_t), summed in column order."""
    for j in range(reference_t.shape[0]):
        value = x[i, j]
        for r in range(reference_t.shape[1]):
            d = value - reference_t[j, r]
            out[r] = d * d if j == 0 else out[r] + d * d


@njit
def _nearest(squared, neighbours, nearest, lane_min, candidates):
    """The len(neighbours) smallest of squared, ascending, ties by lower index (lane_min, candidates: scratch).

    An upper bound comes first, cheaply: the k-th smallest of the minima of _LANES interleaved
    lanes of squared (k values are at most it). Only the few values within it are then
    ranked by insertion, whose branches would mispredict on most of a row's 256 values.
    """
    k = len(neighbours)
    lane_min[:] = np.inf
    for start in range(0, len(squared) - _LANES + 1, _LANES):
        for lane in range(_LANES):
            lane_min[lane] = min(lane_min[lane], squared[start + lane])
    for r in range(len(squared) - len(squared) % _LANES, len(squared)):
        lane_min[r % _LANES] = min(lane_min[r % _LANES], squared[r])
    bound = np.inf
    for lane in range(_LANES):
        below = 0
        for other in range(_LANES):
            below += lane_min[other] <= lane_min[lane]
        bound = min(bound, lane_min[lane] if below >= k else np.inf)

    count = 0
    for r in range(len(squared)):  # (branch-free)
        candidates[count] = r
        count += squared[r] <= bound
    found = 0
    for c in range(count):
        r = candidates[c]
        d = squared[r]
        if found == k and d >= nearest[k - 1]:
            continue
        j = min(found, k - 1)  # the slot freed: the end, or the current k-th, pushed out
        while j > 0 and nearest[j - 1] > d:
            nearest[j], neighbours[j] = nearest[j - 1], neighbours[j - 1]
            j -= 1
        nearest[j], neighbours[j] = d, r
        found = min(found + 1, k)


@njit
def _nearest_scratch(references):
    """Work arrays of _nearest: a row's squared distances, the lanes' minima, the candidates."""
    return np.empty(references), np.empty(_LANES), np.empty(references, dtype=np.int64)


@njit
def _reference_neighbours(reference_t, neighbours, squared):
    """The k nearest other reference rows of each reference row, and their squared distances."""
    reference = reference_t.T
    distances, lane_min, candidates = _nearest_scratch(reference_t.shape[1])
    for i in range(reference_t.shape[1]):
        _squared_distances(reference, i, reference_t, distances)
        distances[i] = np.inf  # not its own neighbour (k < reference rows, so never one of the k)
        _nearest(distances, neighbours[i], squared[i], lane_min, candidates)


@njit
def _lof_rows(first, last, starts, x, reference_t, k_distance, lrd, k, out):
    distances, lane_min, candidates = _nearest_scratch(reference_t.shape[1])
    neighbours, nearest = np.empty(k, dtype=np.int64), np.empty(k)
    for i in range(starts[first], starts[last]):
        _squared_distances(x, i, reference_t, distances)
        _nearest(distances, neighbours, nearest, lane_min, candidates)
        reach, density = 0.0, 0.0
        for j in range(k):
            reach += max(math.sqrt(nearest[j]), k_distance[neighbours[j]])
            density += lrd[neighbours[j]]
        # the neighbours' mean reachability density over the row's own, 1 / (mean reach + 1e-10)
        out[i] = density / k * (reach / k + 1e-10)


@njit
def _forest_rows(first, last, starts, x, roots, children, feature, threshold, path, steps, denominator, out):
    width, block = x.shape[1], _longest(first, last, starts)
    rows32 = np.empty(block * width, dtype=np.float32)  # the block's rows, in float32 as sklearn's trees see them
    node, depth = np.empty(block, dtype=np.uint64), np.empty(block)
    for s in range(first, last):
        begin, n = starts[s], starts[s + 1] - starts[s]
        for r in range(n):
            for j in range(width):
                rows32[r * width + j] = x[begin + r, j]
        depth[:n] = 0.0
        # Tree by tree, all rows of the block one level at a time: the walks are independent, and
        # branch-free (unsigned indices: no wraparound checks), so the core overlaps them.
        for t in range(len(roots)):
            node[:n] = roots[t]
            for _ in range(steps):
                for r in range(n):
                    at = node[r]
                    right = np.uint64(rows32[np.uint64(r * width) + feature[at]] > threshold[at])
                    node[r] = children[np.uint64(2) * at + right]
            for r in range(n):
                depth[r] += path[node[r]]
        for r in range(n):
            out[begin + r] = 2.0 ** (-(depth[r] / denominator))


@njit
def _median_mad_scale(first, last, starts, values, out):
    longest = _longest(first, last, starts)
    finite, scratch = np.empty(longest), np.empty(longest)
    for s in range(first, last):
        n = 0
        for i in range(starts[s], starts[s + 1]):
            if np.isfinite(values[i]):
                finite[n] = values[i]
                n += 1
        if n == 0:
            out[:, s] = np.nan
            continue
        median = _median(finite[:n], scratch)
        # the mean absolute deviation, compensated (Neumaier): its terms are >= 0, so it is about exact
        total, compensation = 0.0, 0.0
        for i in range(n):
            d = abs(finite[i] - median)
            finite[i] = d
            t = total + d
            compensation += (total - t) + d if total >= d else (d - t) + total
            total = t
        mad = _median(finite[:n], scratch)
        scale = 1.4826 * mad if mad > 0 else 1.2533 * ((total + compensation) / n)
        out[0, s], out[1, s], out[2, s] = median, mad, max(scale, SCALE_FLOOR * max(abs(median), 1.0))


@njit
def _longest(first, last, starts):
    """Rows in the longest of segments first..last - 1."""
    longest = 0
    for s in range(first, last):
        longest = max(longest, starts[s + 1] - starts[s])
    return longest


@njit
def _median(x, near):
    """Median of x, as Polars computes it (near: scratch as long as x).

    The middle values are selected among the values near them only: those between two
    ranks of a sample around the middle, gathered in one branch-free pass (or among all,
    should a middle value fall outside them).
    """
    n, k = len(x), len(x) // 2  # k: the upper middle value's rank (the lower's is k - 1 for an even n)
    low, high = _middle_bracket(x, k, near)
    below, inside, below_max = 0, 0, -np.inf
    for v in x:
        near[inside] = v
        inside += (low <= v) & (v <= high)
        below += v < low
        below_max = max(below_max, v if v < low else -np.inf)
    if not below <= k < below + inside:
        near[:n], below, inside = x, 0, n
    upper = _select(near[:inside], k - below)
    if n % 2:
        return upper
    lower = near[: k - below].max() if k > below else below_max
    return lower + (upper - lower) * 0.5


@njit
def _middle_bracket(x, k, sample):
    """(low, high) that likely hold x's k-th smallest value: ranks around it in a strided sample of x."""
    size = 1024
    if len(x) <= 4 * size:
        return -np.inf, np.inf
    step = len(x) // size
    for i in range(size):
        sample[i] = x[i * step]
    rank = k * size // len(x)
    margin = 48  # 3 standard deviations of the sample rank of x's k-th value
    return _select(sample[:size], max(rank - margin, 0)), _select(sample[:size], min(rank + margin, size - 1))


@njit
def _select(x, k):
    """x[k] once x is reordered so that x[:k] <= x[k] <= x[k + 1:] (quickselect, Hoare's partition)."""
    low, high = 0, len(x) - 1
    while low < high:
        a, b, c = x[low], x[(low + high) // 2], x[high]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = low, high
        while i <= j:
            while x[i] < pivot:
                i += 1
            while x[j] > pivot:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        # now x[low:j + 1] <= pivot <= x[i:high + 1], and x[j + 1:i] == pivot
        if k <= j:
            high = j
        elif k >= i:
            low = i
        else:
            break
    return x[k]
