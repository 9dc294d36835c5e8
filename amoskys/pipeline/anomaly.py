"""Stage 5, anomaly-aware: how unusual each row is for its host, learned from the training rows only.

``AnomalyStage`` is fitted on the training split and then transforms every row; only
``fit`` looks at values to learn from, so a validation row can never change what is
learned. For each key metric x of a row (host h, time t):

- ``robust_z``: (x − median) / scale with the median and scale of h's training rows;
  scale is 1.4826 × MAD, or 1.2533 × the mean absolute deviation when the MAD is 0 (a
  mostly-constant metric such as a failure rate), floored at 1% of max(1, |median|):
  a change under 1% of a metric's level is no anomaly, however flat its training
  (a short baseline's memory or process count), and a metric constant in training
  gives a large but finite z. A host without training
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
a budget of ~1.5 s for all of stage 5. The baselines are computed, and both models
scored, by compiled loops (``outlier_scores``): medians exact, LOF with exact float64
distances (of reference rows at equal distance, the lower index is the nearer), the
forest by walking the fitted trees; both scores equal sklearn's ``-score_samples``.

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

import numpy as np
import polars as pl

from amoskys.errors import InputError, ModelError
from amoskys.pipeline.features import ANOMALY, Feature, seconds
from amoskys.pipeline.jit import by_hosts, emitted_rows, njit, segments
from amoskys.pipeline.outlier_scores import Forest, Lof, median_mad_scale
from amoskys.pipeline.windowed import MIN_SAMPLES, pearson, permutation_entropy

KEY_METRICS = ("cpu_busy_pct", "mem_used_bytes", "load_avg_1m", "net_tx_bytes_per_s", "net_rx_bytes_per_s",
               "tcp_attempt_fails_per_s", "disk_busy_pct", "process_count")  # fmt: skip
CPU, NET = "cpu_busy_pct", ("net_tx_bytes_per_s", "net_rx_bytes_per_s")


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

        _require(train, self.inputs())
        if train.height < 2:
            raise InputError(f"stage 5 needs at least 2 training rows, got {train.height}")
        fleet, per_host = _robust_stats(train, self.inputs())
        if missing := [m for m in self.inputs() if fleet[f"{m}:median"][0] is None]:
            raise InputError(f"key metric {missing[0]} has no values in the training rows")
        self.fleet_baseline_ = fleet
        self.baselines_ = per_host.with_columns(pl.col(c).fill_null(fleet[c][0]) for c in fleet.columns)
        self.training_rows_ = train.height

        size = min(self.reference_rows, train.height)
        sample = np.sort(np.random.default_rng(self.seed).choice(train.height, size, replace=False))
        # z is computed row by row, so scaling only the sampled rows gives the same reference.
        self.reference_ = self._robust_z_of(train[sample])
        self.lof_ = Lof(self.reference_, min(self.lof_neighbors, size - 1))
        # (n_jobs: trees built on a thread per core; their seeds are drawn first, so they do not depend on it)
        self.iforest_ = IsolationForest(n_estimators=50, max_samples=min(256, size), random_state=self.seed,
                                        n_jobs=-1).fit(self.reference_)  # fmt: skip
        self.forest_ = Forest(self.iforest_)  # its trees as arrays, scored compiled
        return self

    def transform(self, frame: pl.DataFrame, emit_from: np.ndarray | None = None) -> pl.DataFrame:
        """frame with every declared stage-5 column added (frame sorted by host then ts, one row per host and ts).

        With emit_from (per host segment, its first row to compute), only the rows from there on are
        returned; the earlier ones are history for the windows (a live detector's kept rows, 2 × the
        window of them: see ``windowed``).
        """
        self._check_fitted()
        _require(frame, self.inputs())
        _check_sorted(frame)
        starts = segments(frame["host"])
        median, scale = self.baselines_of(frame["host"].gather(starts[:-1]).to_list())
        inputs = frame.select(pl.col(self.inputs()).cast(pl.Float64)).to_numpy().T  # null as NaN
        columns = self.transform_arrays(frame["ts"].dt.epoch("ns").to_numpy(), inputs, starts, median, scale, emit_from)
        if emit_from is not None:
            frame = frame[emitted_rows(starts, emit_from)]
        return frame.hstack([pl.Series(feature.name, values, nan_to_null=True)
                             for feature, values in zip(self.features(), columns)])  # fmt: skip

    def transform_arrays(self, ts_ns: np.ndarray, inputs: np.ndarray, starts: np.ndarray, median: np.ndarray,
                         scale: np.ndarray, emit_from: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
        """The declared stage-5 columns of rows given as arrays, one per feature of ``features()`` (NaN where
        ``transform`` has null): what ``transform`` adds.

        ts_ns: int64, per host segment ``starts[s]:starts[s + 1]`` in time order; inputs: (``inputs()``, rows),
        NaN where missing; median, scale: (segments, ``inputs()``), each segment's baseline (``baselines_of``).
        """
        entropy = permutation_entropy(inputs[: len(self.key_metrics)], self.entropy_scales, ts_ns, starts,
                                      self.window_ns(), emit_from)  # fmt: skip
        return self.columns_of(ts_ns, self.robust_z(inputs, starts, median, scale), starts, emit_from, entropy)

    def robust_z(self, inputs: np.ndarray, starts: np.ndarray, median: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """(``inputs()`` + 1, rows): the robust z of each input (segment s with the baseline median[s], scale[s]),
        then the network's (the z of ``NET`` weighted by their scales), NaN where missing: all that the windows and
        the scores read of a row (a live detector keeps these rows of each host)."""
        return robust_z(inputs, starts, median, scale, self._net_indices())

    def columns_of(self, ts_ns: np.ndarray, z: np.ndarray, starts: np.ndarray, emit_from: np.ndarray | None,
                   entropy: np.ndarray, pearson_state: np.ndarray | None = None) -> list[np.ndarray]:  # fmt: skip
        """``transform_arrays``'s columns from the rows' ``robust_z`` and the entropy rows of the rows to compute
        (``permutation_entropy``'s: a live detector keeps the pattern counts, ``RunningPatterns``); pearson_state:
        (segments, ``correlations()``, ``PEARSON_STATE``), the correlations' ``pearson`` state when the caller
        keeps it (a live detector)."""
        key = len(self.key_metrics)  # ``inputs()`` begins with the key metrics
        windowed = self._windowed(ts_ns, z, starts, emit_from, entropy, pearson_state)
        z = z[:key].T if emit_from is None else z[:key, emitted_rows(starts, emit_from)].T
        lof, iforest = self._scores(np.ascontiguousarray(np.where(np.isnan(z), 0.0, z)))  # missing counts as typical
        columns = {f"{m}_robust_z": z[:, j] for j, m in enumerate(self.key_metrics)}
        columns |= windowed | {"lof_score": lof, "iforest_score": iforest}
        return [columns[f.name] for f in self.features()]  # (not stacked: a copy of every column, in a batch)

    def baselines_of(self, hosts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(median, scale): (hosts, ``inputs()``) arrays of each host's training baseline, the fleet's for a host
        unseen in training."""
        fleet = self.fleet_baseline_.row(0, named=True)
        rows = pl.DataFrame({"host": hosts}, schema={"host": pl.String}).join(
            self.baselines_, on="host", how="left", maintain_order="left"
        )

        def stat(name: str) -> np.ndarray:
            columns = [f"{m}:{name}" for m in self.inputs()]
            filled = rows.select(pl.col(c).fill_null(fleet[c]).cast(pl.Float64) for c in columns)
            return np.ascontiguousarray(filled.to_numpy().reshape(len(hosts), len(columns)))

        return stat("median"), stat("scale")

    def fitted_statistics(self) -> dict:
        """What fit learned, as plain JSON-ready values, for ``feature_metadata.json``."""
        self._check_fitted()

        def baseline(row: dict) -> dict:
            return {m: {s: row[f"{m}:{s}"] for s in ("median", "mad", "scale")} for m in self.inputs()}

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

    def correlations(self) -> int:
        """How many Pearson correlations a row has: each key metric's autocorrelation, and the CPU/network one."""
        return len(self.key_metrics) + 1

    def window_ns(self) -> int:
        return int(round(self.window_s * 1e9))

    def inputs(self) -> list[str]:
        """The key metrics plus the ones the CPU/network correlation needs, each once."""
        return list(dict.fromkeys((*self.key_metrics, CPU, *NET)))

    def _input_index(self, metric: str) -> int:
        return self.inputs().index(metric)

    def _net_indices(self) -> np.ndarray:
        return np.array([self._input_index(n) for n in NET])

    def _robust_z_of(self, rows: pl.DataFrame) -> np.ndarray:
        """The key metrics' robust z of rows (any order, 0 where missing), as a C-ordered matrix."""
        median, scale = self.baselines_of(rows["host"].to_list())
        inputs = rows.select(pl.col(self.inputs()).cast(pl.Float64)).to_numpy().T
        z = self.robust_z(inputs, np.arange(rows.height + 1), median, scale)[: len(self.key_metrics)].T
        return np.ascontiguousarray(np.where(np.isnan(z), 0.0, z))

    def _windowed(self, ts_ns: np.ndarray, z: np.ndarray, starts: np.ndarray, emit_from: np.ndarray | None,
                  entropy: np.ndarray, pearson_state: np.ndarray | None) -> dict[str, np.ndarray]:  # fmt: skip
        """The entropy and correlation columns (see ``windowed``) of the rows from emit_from on; z: ``robust_z``'s
        rows."""
        w, window_ns, key = seconds(self.window_s), self.window_ns(), len(self.key_metrics)
        ts_ns = np.ascontiguousarray(ts_ns, dtype=np.int64)
        cpu_net = z[[self._input_index(CPU), -1]]  # the CPU's z and the network's
        state = [None, None]  # each pearson call's own (C-ordered) part of the state, copied back after
        if pearson_state is not None:
            state = [pearson_state[:, :key].copy(), pearson_state[:, key:].copy()]
        # pairs (previous sample, sample)
        autocorr = pearson(z[:key], z[:key], 1, ts_ns, starts, window_ns, emit_from, state[0])
        cpu_net_corr = pearson(cpu_net[:1], cpu_net[1:], 0, ts_ns, starts, window_ns, emit_from, state[1])
        if pearson_state is not None:
            pearson_state[:, :key], pearson_state[:, key:] = state
        names = [f"{m}_perm_entropy_s{k}_{w}" for m in self.key_metrics for k in self.entropy_scales]
        names += [f"{m}_autocorr_{w}" for m in self.key_metrics] + [f"cpu_net_corr_{w}"]
        columns = [*entropy, *autocorr, *cpu_net_corr]
        return dict(zip(names, columns))

    def _scores(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lof, iforest) of each row of z; sklearn's scores negated so higher = more anomalous."""
        return self.lof_.score(z), self.forest_.score(z)


def robust_z(inputs: np.ndarray, starts: np.ndarray, median: np.ndarray, scale: np.ndarray,
             net: np.ndarray) -> np.ndarray:  # fmt: skip
    """(inputs + 1, rows) of inputs (inputs, rows): each input's robust z with segment s's baseline median[s] /
    scale[s] (NaN where missing or not finite), then the network's: the z of the inputs net weighted by their
    scales (a missing one counting 0)."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float64)
    z = np.empty((len(inputs) + 1, inputs.shape[1]))
    by_hosts(_robust_z, starts, inputs, median, scale, net, z)
    return z


@njit
def _robust_z(first, last, starts, inputs, median, scale, net, z):
    network = inputs.shape[0]
    for s in range(first, last):
        for i in range(starts[s], starts[s + 1]):
            for j in range(inputs.shape[0]):
                v = (inputs[j, i] - median[s, j]) / scale[s, j]
                z[j, i] = v if np.isfinite(v) else np.nan
            weighted, scales = 0.0, 0.0
            for n in net:
                if not np.isnan(z[n, i]):
                    weighted += z[n, i] * scale[s, n]
                scales += scale[s, n]
            z[network, i] = weighted / scales


def _robust_stats(train: pl.DataFrame, metrics: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(fleet, per host): median, MAD and the scale robust z divides by, of each metric (module docstring).

    Of finite values only (as in transform, a non-finite value is missing): null without
    any. The fleet's is one row; the hosts' one row per host, sorted by host.
    """
    if not train["host"].is_sorted():
        train = train.sort("host", maintain_order=True)
    starts = segments(train["host"])
    values = train.select(pl.col(metrics).cast(pl.Float64)).to_numpy()  # null as NaN
    columns = [(j, s, f"{m}:{stat}") for j, m in enumerate(metrics) for s, stat in enumerate(("median", "mad", "scale"))]

    def frame(stats: np.ndarray) -> pl.DataFrame:  # stats[s, j, segment] -> a row per segment
        return pl.DataFrame([pl.Series(name, stats[s, j], nan_to_null=True) for j, s, name in columns])

    fleet = frame(median_mad_scale(values, np.array([0, train.height])))
    return fleet, frame(median_mad_scale(values, starts)).insert_column(0, train["host"].gather(starts[:-1]))


def _quantiles(scores: np.ndarray) -> dict:
    levels = {"p50": 0.5, "p90": 0.9, "p99": 0.99, "max": 1.0}
    return {name: float(np.quantile(scores, q)) for name, q in levels.items()}


def _require(frame: pl.DataFrame, metrics: list[str]) -> None:
    if missing := [c for c in ("host", "ts", *metrics) if c not in frame.columns]:
        raise InputError(f"stage 5 needs column {missing[0]}, which the frame lacks")


def _check_sorted(frame: pl.DataFrame) -> None:
    """Each host's rows together (in any host order) and in time order, one per time."""
    host, ts = pl.col("host"), pl.col("ts")
    same = host == host.shift(1)
    checks = frame.select(
        in_time=(~same | (ts > ts.shift(1))).fill_null(True).all(),
        together=(~same).fill_null(True).sum() == host.n_unique(),
    )
    if not all(checks.row(0)):
        raise InputError("stage 5 needs each host's rows together and in time order, with one row per host and ts")
