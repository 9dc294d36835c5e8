"""Stage 5, anomaly-aware: how unusual each row is for its host, learned from the training rows only.

``AnomalyStage`` is fitted on the training split and then transforms every row; only
``fit`` looks at values to learn from, so a validation row can never change what is
learned. For each key metric x of a row (host h, time t):

- ``robust_z``: (x − median) / scale with the median and scale of h's training rows;
  scale is 1.4826 × MAD, or 1.2533 × the mean absolute deviation when the MAD is 0 (a
  mostly-constant metric such as a failure rate), floored at 1e-6 × max(1, |median|)
  so a metric constant in training gives a large but finite z. A host without training
  rows (or without values of a metric there) uses the fleet-wide training baseline.
- ``perm_entropy_s{k}``: normalised permutation entropy (order 3) over (t − w, t]:
  each row's ordinal pattern is the rank order of three values k samples apart, after
  averaging x over k consecutive samples (the coarse-graining of multi-scale entropy);
  0 for a constant or monotonic window, near 1 for noise.
- ``autocorr``: Pearson correlation of the pairs (x at the previous sample, x) over
  (t − w, t]: near 1 for smooth series, near 0 for noise.

and for the row as a whole:

- ``cpu_net_corr``: Pearson correlation of cpu_busy_pct with net tx + rx over (t − w, t].
- ``lof_score`` and ``iforest_score``: local outlier factor and isolation-forest
  anomaly score (higher = more anomalous) of the row's robust z-scores (a missing
  metric counts as typical, z = 0), against a seeded random sample of at most
  ``reference_rows`` training rows, in the same scaling.

Model sizes are chosen for speed (measured on 1M rows, 2 cores): 256 reference rows,
10 neighbours and 50 trees of 256 samples. With 2000 reference rows and 20 neighbours
LOF scoring alone took ~8 s per 1M rows and the default 100-tree forest ~2.4 s, against
a budget of ~1.5 s for all of stage 5. LOF is scored in NumPy: one float32 matrix product
per chunk for the squared distances, a partition for the k nearest (ties among distances
equal to about 1 part in 2**15 are broken by reference row), exact float64 distances to
those k, and the reference rows' k-distances and reachability densities looked up.

Windows are counted in time and within one host. Samples are the host's consecutive
rows (one grid step apart after stage 1); a pair or pattern spanning more than w in
time (across a long gap) is not formed. Windowed features are null while a window
holds fewer than ``MIN_SAMPLES`` pairs or patterns (a host's warm-up, or after a gap);
a correlation whose window is constant is 0. ``robust_z`` is null only where x is.
No output is ever NaN or infinite. Everything is streamable: a live detector keeps per
host the last 3k samples and running sums or pattern counts over w, and the fitted
baselines and models score one row at a time.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from amoskys.errors import InputError, ModelError
from amoskys.pipeline.features import ANOMALY, Feature, seconds, with_host_time
from amoskys.pipeline.windowed import MIN_SAMPLES, lag_ok, pattern_entropy, pearson, pearson_sums, window_starts

KEY_METRICS = ("cpu_busy_pct", "mem_used_bytes", "load_avg_1m", "net_tx_bytes_per_s", "net_rx_bytes_per_s",
               "tcp_attempt_fails_per_s", "disk_busy_pct", "process_count")  # fmt: skip
CPU, NET = "cpu_busy_pct", ("net_tx_bytes_per_s", "net_rx_bytes_per_s")
_CHUNK = 100_000  # rows scored per model call, to bound memory
_LOF_BLOCK = 4096  # rows per LOF distance matrix: its few passes then stay in cache (4 MB at 256 reference rows)


class AnomalyStage:
    """Stage 5: ``fit(train)`` learns baselines and models; ``transform(frame)`` adds ``features()``."""

    def __init__(self, key_metrics: tuple[str, ...] = KEY_METRICS, window_s: float = 300.0, lof_neighbors: int = 10,
                 reference_rows: int = 256, seed: int = 0, entropy_scales: tuple[int, ...] = (1, 2, 4)):  # fmt: skip
        self.key_metrics = key_metrics
        self.window_s = window_s
        self.lof_neighbors = lof_neighbors
        self.reference_rows = reference_rows
        self.seed = seed
        self.entropy_scales = entropy_scales

    def features(self) -> list[Feature]:
        w = seconds(self.window_s)
        span = f"over the last {w} of this host"
        out = [
            Feature(f"{m}_robust_z", ANOMALY, "z", f"Robust z-score of {m}: (x - median) / (1.4826 MAD), with the "
                    "host's training median and MAD (the fleet's for a host unseen in training).", (m,))
            for m in self.key_metrics
        ]  # fmt: skip
        out += [
            Feature(f"{m}_perm_entropy_s{k}_{w}", ANOMALY, "ratio", f"Normalised order-3 permutation entropy of {m} "
                    f"averaged over {k} samples, {span}: 0 constant or monotonic, near 1 noise.", (m,), w)
            for m in self.key_metrics for k in self.entropy_scales
        ]  # fmt: skip
        out += [
            Feature(f"{m}_autocorr_{w}", ANOMALY, "correlation", f"Lag-1 autocorrelation of {m} {span}; 0 when "
                    "constant.", (m,), w)
            for m in self.key_metrics
        ]  # fmt: skip
        out += [
            Feature(f"cpu_net_corr_{w}", ANOMALY, "correlation", f"Pearson correlation of {CPU} with network "
                    f"tx + rx bytes/s {span}; 0 when either is constant.", (CPU, *NET), w),
            Feature("lof_score", ANOMALY, "score", "Local outlier factor of the row's robust z-scores against a sample "
                    "of training rows (about 1 typical, higher = more anomalous).", self.key_metrics),
            Feature("iforest_score", ANOMALY, "score", "Isolation-forest anomaly score (0-1, higher = more anomalous) "
                    "of the row's robust z-scores, trained on a sample of training rows.", self.key_metrics),
        ]  # fmt: skip
        return out

    def fit(self, train: pl.DataFrame) -> AnomalyStage:
        """Learn the baselines and the two models from the rows of train, and nothing else."""
        from sklearn.ensemble import IsolationForest

        _require(train, self._metrics())
        if train.height < 2:
            raise InputError(f"stage 5 needs at least 2 training rows, got {train.height}")
        # (a group-by over one constant key: several times faster than the same select in Polars 2.1)
        fleet = train.group_by(pl.lit(0).alias(":all")).agg(_robust_stats(self._metrics())).drop(":all")
        if missing := [m for m in self._metrics() if fleet[f"{m}:median"][0] is None]:
            raise InputError(f"key metric {missing[0]} has no values in the training rows")
        per_host = train.group_by("host").agg(_robust_stats(self._metrics())).sort("host")
        self.fleet_baseline_ = fleet
        self.baselines_ = per_host.with_columns(pl.col(c).fill_null(fleet[c][0]) for c in fleet.columns)
        self.training_rows_ = train.height

        size = min(self.reference_rows, train.height)
        sample = np.sort(np.random.default_rng(self.seed).choice(train.height, size, replace=False))
        # z is computed row by row, so scaling only the sampled rows gives the same reference (row-major,
        # as BLAS rounds the LOF's reference distances differently in another memory layout).
        self.reference_ = self._scaled(train[sample]).select(self._z_names()).fill_null(0.0).to_numpy(order="c")
        self.lof_ = _Lof(self.reference_, min(self.lof_neighbors, size - 1))
        self.iforest_ = IsolationForest(n_estimators=50, max_samples=min(256, size), random_state=self.seed).fit(self.reference_)
        return self

    def transform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """frame with every declared stage-5 column added (frame sorted by host then ts, one row per host and ts)."""
        self._check_fitted()
        _require(frame, self._metrics())
        _check_sorted(frame)
        work = self._scaled(frame)
        z = work.select(self._z_names()).fill_null(0.0).to_numpy()
        lof, iforest = self._scores(z)
        columns = {f"{m}_robust_z": work[f"{m}:z"] for m in self.key_metrics}
        columns |= self._windowed(work).to_dict()
        columns |= {"lof_score": pl.Series(lof), "iforest_score": pl.Series(iforest)}
        return frame.hstack([columns[f.name].cast(pl.Float64).alias(f.name) for f in self.features()])

    def fitted_statistics(self) -> dict:
        """What fit learned, as plain JSON-ready values, for ``feature_metadata.json``."""
        self._check_fitted()

        def baseline(row: dict) -> dict:
            return {m: {s: row[f"{m}:{s}"] for s in ("median", "mad", "scale")} for m in self._metrics()}

        train_lof, train_iforest = self.lof_.training_scores, -self.iforest_.score_samples(self.reference_)
        return {
            "key_metrics": list(self.key_metrics),
            "window": seconds(self.window_s),
            "entropy_scales": list(self.entropy_scales),
            "training_rows": self.training_rows_,
            "baselines": {row["host"]: baseline(row) for row in self.baselines_.iter_rows(named=True)},
            "fleet_baseline": baseline(self.fleet_baseline_.row(0, named=True)),
            "reference": {"rows": len(self.reference_), "seed": self.seed,
                          "sha256": hashlib.sha256(self.reference_.tobytes()).hexdigest()},  # fmt: skip
            "lof": {"n_neighbors": self.lof_.k,
                    "training_scores": _quantiles(train_lof)},  # fmt: skip
            "iforest": {"n_estimators": len(self.iforest_.estimators_),
                        "max_samples": int(self.iforest_.max_samples_), "offset": float(self.iforest_.offset_),
                        "training_scores": _quantiles(train_iforest)},  # fmt: skip
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "baselines_"):
            raise ModelError("AnomalyStage is not fitted: call fit(train) first")

    def _metrics(self) -> list[str]:
        """The key metrics plus the ones the CPU/network correlation needs, each once."""
        return list(dict.fromkeys((*self.key_metrics, CPU, *NET)))

    def _z_names(self) -> list[str]:
        return [f"{m}:z" for m in self.key_metrics]

    def _scaled(self, frame: pl.DataFrame) -> pl.DataFrame:
        """host, ts, each metric, its baseline ``:median``/``:scale`` and robust ``:z``, in frame order."""
        fleet = self.fleet_baseline_.row(0, named=True)
        base = [f"{m}:{s}" for m in self._metrics() for s in ("median", "scale")]
        work = frame.select("host", "ts", *self._metrics()).join(
            self.baselines_.select("host", *base), on="host", how="left", maintain_order="left"
        )
        work = work.with_columns(pl.col(c).fill_null(fleet[c]) for c in base)
        z = [(pl.col(m) - pl.col(f"{m}:median")) / pl.col(f"{m}:scale") for m in self._metrics()]
        # A non-finite input (stage 1 never passes one) counts as missing, so no output is NaN or infinite.
        return work.with_columns(pl.when(v.is_finite()).then(v).alias(f"{m}:z") for m, v in zip(self._metrics(), z))

    def _windowed(self, work: pl.DataFrame) -> pl.DataFrame:
        """The entropy and correlation columns (see ``windowed``)."""
        w, window_ns = seconds(self.window_s), int(round(self.window_s * 1e9))
        host = work.select((pl.col("host") != pl.col("host").shift(1)).fill_null(True).cum_sum()).to_series().to_numpy()
        ts_ns = work["ts"].dt.epoch("ns").to_numpy()
        starts = window_starts(host, ts_ns, window_ns)
        # A pattern at scale k reaches 3k - 1 rows back (its oldest mean starts there).
        ok = {lag: lag_ok(host, ts_ns, lag, window_ns) for lag in {1, *(3 * k - 1 for k in self.entropy_scales)}}
        tasks = [(m, k) for m in self.key_metrics for k in self.entropy_scales]
        values = {m: work[m].cast(pl.Float64).fill_null(np.nan).to_numpy() for m in self.key_metrics}
        entropies = _parallel(lambda task: pattern_entropy(values[task[0]], task[1], ok[3 * task[1] - 1], starts), tasks)

        gap_s = max(86_400.0, 2 * self.window_s)  # on the host-time axis, hosts never share a window
        keyed = with_host_time(work, gap_s).with_columns(pl.Series(":near1", ok[1]))
        net = (pl.sum_horizontal(pl.col(f"{n}:z") * pl.col(f"{n}:scale") for n in NET)
               / pl.sum_horizontal(pl.col(f"{n}:scale") for n in NET))  # fmt: skip
        sums = [pearson_sums(f"{m}:ac", pl.col(f"{m}:z").shift(1), pl.col(f"{m}:z"), pl.col(":near1"), w)
                for m in self.key_metrics]  # fmt: skip
        sums.append(pearson_sums("cpu_net", pl.col(f"{CPU}:z"), net, pl.lit(True), w))
        correlations = keyed.select(*(s for group in sums for s in group)).select(
            *(pearson(f"{m}:ac").alias(f"{m}_autocorr_{w}") for m in self.key_metrics),
            pearson("cpu_net").alias(f"cpu_net_corr_{w}"),
        )
        entropy_columns = [pl.Series(f"{m}_perm_entropy_s{k}_{w}", h, nan_to_null=True) for (m, k), h in zip(tasks, entropies)]
        return correlations.hstack(entropy_columns)

    def _scores(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lof, iforest) of each row of z; sklearn's scores negated so higher = more anomalous.

        Rows are scored in chunks (to bound memory), a thread each; a row's score does
        not depend on its chunk (a row's depths still add up over the trees in one order).
        """
        chunks = [z[start:start + _CHUNK] for start in range(0, len(z), _CHUNK)]
        lof = _parallel(self.lof_.score, chunks)
        iforest = _parallel(lambda chunk: -self.iforest_.score_samples(chunk), chunks)
        return np.concatenate(lof or [np.empty(0)]), np.concatenate(iforest or [np.empty(0)])


class _Lof:
    """Novelty local outlier factor of rows against a fixed reference (sklearn's definition, in NumPy)."""

    def __init__(self, reference: np.ndarray, k: int):
        self.reference, self.k = reference, k
        squared = (reference * reference).sum(axis=1)
        distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2.0 * reference @ reference.T, 0.0))
        np.fill_diagonal(distances, np.inf)  # a reference row is not its own neighbour
        neighbours = np.argsort(distances, axis=1, kind="stable")[:, :k]
        near = np.take_along_axis(distances, neighbours, axis=1)
        self.k_distance = near[:, -1]
        self.lrd = self._density(near, neighbours)
        self.training_scores = self.lrd[neighbours].mean(axis=1) / self.lrd
        reference32 = reference.astype(np.float32)
        self._squared32 = (reference32 * reference32).sum(axis=1)
        # Contiguous transposed: multiplying by a transposed view made OpenBLAS take a ~15x slower path.
        self._reference32t = np.ascontiguousarray(reference32.T)
        self._bits = max(1, (len(reference) - 1).bit_length())

    def score(self, x: np.ndarray) -> np.ndarray:
        """LOF of each row of x: about 1 typical, higher = more anomalous."""
        out = np.empty(len(x))
        for start in range(0, len(x), _LOF_BLOCK):
            out[start:start + _LOF_BLOCK] = self._score_block(x[start:start + _LOF_BLOCK])
        return out

    def _score_block(self, x: np.ndarray) -> np.ndarray:
        x32 = x.astype(np.float32)
        # |x|² + |r|² - 2 x·r, floored at 0, in place (the doubling is exact, so this order of rounding is fixed)
        squared = (x32 * x32).sum(axis=1)[:, None] + self._squared32
        squared -= (2.0 * x32) @ self._reference32t
        np.maximum(squared, 0.0, out=squared)
        # The reference row's index replaces the lowest mantissa bits of its (non-negative) squared
        # distance: one partition of the values finds the k nearest, cheaper than argpartition.
        packed = squared.view(np.uint32)
        packed &= np.uint32((1 << 32) - (1 << self._bits))
        packed |= np.arange(len(self.reference), dtype=np.uint32)
        neighbours = np.partition(squared, self.k - 1, axis=1)[:, : self.k].view(np.uint32)
        neighbours = (neighbours & np.uint32((1 << self._bits) - 1)).astype(np.intp)
        near = np.sqrt(((x[:, None, :] - self.reference[neighbours]) ** 2).sum(axis=2))
        return self.lrd[neighbours].mean(axis=1) / self._density(near, neighbours)

    def _density(self, near: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
        """Local reachability density from the distances to the k neighbours."""
        return 1.0 / (np.maximum(near, self.k_distance[neighbours]).mean(axis=1) + 1e-10)


def _robust_stats(metrics: list[str]) -> list[pl.Expr]:
    """median, MAD and the scale robust z divides by, of each metric (see the module docstring)."""
    exprs = []
    for m in metrics:
        x = pl.when(pl.col(m).is_finite()).then(pl.col(m))  # as in transform: a non-finite value is missing
        deviation = (x - x.median()).abs()
        mad, mean_ad = deviation.median(), deviation.mean()
        floor = 1e-6 * pl.max_horizontal(x.median().abs(), pl.lit(1.0))
        scale = pl.when(mad > 0).then(1.4826 * mad).otherwise(1.2533 * mean_ad)
        scale = pl.when(x.median().is_not_null()).then(pl.max_horizontal(scale, floor))
        exprs += [x.median().alias(f"{m}:median"), mad.alias(f"{m}:mad"), scale.alias(f"{m}:scale")]
    return exprs


def _parallel(function, items: list) -> list:
    """[function(item) for item in items] on a thread per core: NumPy and sklearn's trees release the GIL."""
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(function, items))


def _quantiles(scores: np.ndarray) -> dict:
    levels = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
    return {name: float(np.quantile(scores, q)) for name, q in levels.items()}


def _require(frame: pl.DataFrame, metrics: list[str]) -> None:
    if missing := [c for c in ("host", "ts", *metrics) if c not in frame.columns]:
        raise InputError(f"stage 5 needs column {missing[0]}, which the frame lacks")


def _check_sorted(frame: pl.DataFrame) -> None:
    host, ts = pl.col("host"), pl.col("ts")
    ordered = (host > host.shift(1)) | ((host == host.shift(1)) & (ts > ts.shift(1)))
    if not frame.select(ordered.fill_null(True).all()).item():
        raise InputError("stage 5 needs the frame sorted by host then ts, with one row per host and ts")
