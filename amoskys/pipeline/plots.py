"""The pipeline's four diagnostic plots, drawn from row samples so each stays fast on millions of rows.

- ``feature_correlations.png``: the most informative features (by correlation with the
  label when there are labels, else by mean correlation with the other features),
  ordered by hierarchical clustering so that redundant groups sit together;
- ``normalized_distributions.png``: the top-ranked features, near-duplicates skipped, after
  standard scaling, benign vs incident rows (train vs validation rows when there are no labels);
- ``temporal_patterns.png``: key metrics over time for a few hosts, incident windows
  shaded and named, the train/validation boundary marked;
- ``preprocessing_effects.png``: the key metrics raw (each in its own unit) and after scaling.

Scaling always uses TRAIN statistics. Matplotlib is imported inside the functions (it
is slow to import) and used only through ``Figure``, whose PNG output goes through
Agg: no window, no pyplot global state.
"""

from __future__ import annotations

import warnings

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from amoskys.pipeline.features import Feature
from amoskys.pipeline.outputs import writable

SAMPLE_ROWS = 40_000  # per split and class; plots look the same with more
MAX_POINTS = 2_000  # per host in a time series; longer series are averaged in row buckets
KEY_METRICS = ("cpu_busy_pct", "mem_used_bytes", "net_tx_bytes_per_s", "tcp_attempt_fails_per_s")
_DISPLAY = {"bytes": (2.0**30, "GiB"), "bytes/s": (1e6, "MB/s")}
_KIND_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


@dataclass
class _Data:
    train: pl.DataFrame
    val: pl.DataFrame
    units: dict[str, str]
    stats: dict[str, tuple[float, float]]  # feature -> train (mean, std), only features with std > 0
    sample: pl.DataFrame  # both splits, each class sampled apart: split, label, scalable features
    train_sample: pl.DataFrame  # uniform sample of train rows: the rows as they are, for correlations and scaling
    labeled: bool  # some incident rows exist, in either split
    source: str

    def scaled(self, frame: pl.DataFrame, names: list[str]) -> np.ndarray:
        return frame.select((pl.col(n) - self.stats[n][0]) / self.stats[n][1] for n in names).to_numpy()


def make_plots(out_dir: Path, train: pl.DataFrame, val: pl.DataFrame, features: list[Feature], data_source: str,
               scaler_stats: Mapping[str, Mapping[str, float]] | None = None) -> list[Path]:  # fmt: skip
    """Draw the four PNGs into out_dir and return their paths.

    data_source (``real``, ``simulated`` or ``mixed``) is named in every title. scaler_stats
    maps a feature name to its TRAIN ``{"mean": ..., "std": ...}`` (the ``stats`` entries of
    feature_metadata.json fit); None computes them from train.
    """
    out_dir = Path(out_dir)
    with writable(out_dir):  # fail before any work
        out_dir.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in features if f.name in train.columns and train.schema[f.name].is_numeric()]
    stats = _scaler(train, names, scaler_stats)
    labeled = all("label" in f.columns for f in (train, val)) and bool((train["label"] == 1).any() or (val["label"] == 1).any())
    sample = pl.concat([_sample(train, "train", list(stats), labeled), _sample(val, "validation", list(stats), labeled)])
    train_sample = train.select(*(c for c in ("label",) if c in train.columns), *stats)
    if train.height > SAMPLE_ROWS:
        train_sample = train_sample.sample(SAMPLE_ROWS, seed=0)
    data = _Data(train, val, {f.name: f.unit for f in features}, stats, sample, train_sample, labeled, data_source)
    ranked, how = _ranking(data)
    with writable(out_dir):
        return [
            _correlations(data, ranked, how, out_dir / "feature_correlations.png"),
            _distributions(data, ranked, how, out_dir / "normalized_distributions.png"),
            _temporal(data, ranked, out_dir / "temporal_patterns.png"),
            _preprocessing(data, ranked, out_dir / "preprocessing_effects.png"),
        ]


def _scaler(train: pl.DataFrame, names: list[str], given: Mapping | None) -> dict[str, tuple[float, float]]:
    """feature -> train (mean, std), for the features that can be scaled (finite mean, std > 0)."""
    if given is None:
        means, stds = train.select(pl.col(names).mean()).row(0), train.select(pl.col(names).std()).row(0)
        given = {n: {"mean": mean, "std": std} for n, mean, std in zip(names, means, stds)}
    pairs = {n: (given[n].get("mean"), given[n].get("std")) for n in names if n in given}
    return {
        n: (float(mean), float(std)) for n, (mean, std) in pairs.items()
        if mean is not None and std is not None and np.isfinite(mean) and np.isfinite(std) and std > 0
    }  # fmt: skip


def _sample(frame: pl.DataFrame, split: str, names: list[str], labeled: bool) -> pl.DataFrame:
    """Up to SAMPLE_ROWS random rows per class: incident rows are rare and would be lost in a uniform sample."""
    rng = np.random.default_rng(0)
    label = frame["label"].to_numpy() if labeled else np.zeros(frame.height, np.int8)
    index = np.concatenate([
        np.sort(rng.choice(rows, min(rows.size, SAMPLE_ROWS), replace=False))
        for rows in (np.flatnonzero(label == k) for k in (0, 1))
    ])  # fmt: skip
    columns = (pl.col(n).cast(pl.Float64) for n in names)
    return frame[index].select(split=pl.lit(split), label=pl.lit(label[index], dtype=pl.Int8), *columns)


def _ranking(data: _Data) -> tuple[list[str], str]:
    """Scalable features, most informative first, and how that was judged (for titles)."""
    names = list(data.stats)
    train = data.train_sample
    z = np.nan_to_num(data.scaled(train, names), nan=0.0, posinf=0.0, neginf=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if "label" in train.columns and train["label"].n_unique() > 1:  # train rows only, as everywhere
            score = np.abs(_correlation(z, train["label"].to_numpy().astype(float)))
            how = "|correlation with label|"
        else:
            corr = np.array(np.corrcoef(z, rowvar=False), ndmin=2)
            np.fill_diagonal(corr, np.nan)
            with warnings.catch_warnings():  # a constant feature has no correlations: its mean is NaN, ranked last
                warnings.simplefilter("ignore", RuntimeWarning)
                score = np.nanmean(np.abs(corr), axis=0) if len(names) > 1 else np.zeros(len(names))
            how = "mean |correlation| with the other features"
    order = np.argsort(-np.nan_to_num(np.atleast_1d(score)), kind="stable")
    return [names[i] for i in order], how


def _distinct(data: _Data, ranked: list[str], count: int, limit: float = 0.9) -> list[str]:
    """The first `count` ranked features that no earlier pick correlates with beyond `limit`.

    Windowed variants of one metric (``x``, ``x_mean_30s``, ``x_max_60s`` ...) rank together;
    a plot of twelve of them shows one thing twelve times.
    """
    candidates = ranked[: count * 5]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.nan_to_num(data.scaled(data.train_sample, candidates))
        corr = np.nan_to_num(np.abs(np.array(np.corrcoef(z, rowvar=False), ndmin=2)))
    picked: list[int] = []
    for i in range(len(candidates)):
        if len(picked) == count:
            break
        if not (corr[i, picked] > limit).any():
            picked.append(i)
    return [candidates[i] for i in picked]


def _correlation(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    zc, yc = z - z.mean(axis=0), y - y.mean()
    return zc.T @ yc / (np.sqrt((zc**2).sum(axis=0)) * np.sqrt((yc**2).sum()))


def _correlations(data: _Data, ranked: list[str], how: str, path: Path) -> Path:
    from matplotlib.figure import Figure
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    top = ranked[:28]
    train = data.train_sample
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.array(np.corrcoef(np.nan_to_num(data.scaled(train, top)), rowvar=False), ndmin=2))
    np.fill_diagonal(corr, 1.0)
    if len(top) > 2:  # correlated features (either sign) are close: distance 1 - |r|
        distance = np.clip(1.0 - np.abs(corr), 0.0, None)
        np.fill_diagonal(distance, 0.0)
        tree = hierarchy.linkage(squareform(distance, checks=False), "average", optimal_ordering=True)
        order = hierarchy.leaves_list(tree)
        top, corr = [top[i] for i in order], corr[np.ix_(order, order)]
    fig = Figure(figsize=(11, 10), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(top)), top, rotation=90, fontsize=8)
    ax.set_yticks(range(len(top)), top, fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson correlation r (train rows)")
    title = (f"Feature correlations: top {len(top)} of {len(data.stats)} non-constant features by {how},\n"
             "ordered by hierarchical clustering (average linkage on 1 − |r|)")  # fmt: skip
    return _finish(fig, title, data, path)


def _distributions(data: _Data, ranked: list[str], how: str, path: Path) -> Path:
    from matplotlib.figure import Figure

    names = _distinct(data, ranked, 12)
    if data.labeled:
        groups = [("benign", pl.col("label") == 0, "tab:blue"), ("incident", pl.col("label") == 1, "tab:red")]
    else:
        groups = [("train", pl.col("split") == "train", "tab:blue"),
                  ("validation", pl.col("split") == "validation", "tab:orange")]  # fmt: skip
    values = [(label, data.scaled(data.sample.filter(where), names), color) for label, where, color in groups]
    columns = min(4, max(len(names), 1))
    rows = -(-max(len(names), 1) // columns)
    fig = Figure(figsize=(4 * columns, 2.8 * rows + 1), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for i, name in enumerate(names):
        finite = [v[:, i][np.isfinite(v[:, i])] for _, v, _ in values]
        span = np.concatenate(finite)
        low, high = np.percentile(span, [0.5, 99.5]) if span.size else (-1.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1.0, 40)
        for (label, _, color), x in zip(values, finite):
            if x.size:
                # stepfilled: one patch, not one per bin, so much faster to draw
                axes[i].hist(np.clip(x, bins[0], bins[-1]), bins=bins, density=True, alpha=0.5, color=color,
                             label=label, histtype="stepfilled")  # fmt: skip
        axes[i].set_title(name, fontsize=9)
        if i + columns >= len(names):  # axis titles once per column and row: fewer texts to lay out
            axes[i].set_xlabel("z-score (train mean/std)", fontsize=8)
        if i % columns == 0:
            axes[i].set_ylabel("density", fontsize=8)
        axes[i].tick_params(labelsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    counts = ", ".join(f"{label} {v.shape[0]:,}" for label, v, _ in values)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    title = (f"Normalized distributions of the top {len(names)} features by {how}, near-duplicates (|r| > 0.9) "
             f"skipped\n(rows sampled: {counts}; tails clipped to the 0.5–99.5th percentile)")  # fmt: skip
    return _finish(fig, title, data, path)


def _temporal(data: _Data, ranked: list[str], path: Path) -> Path:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    metrics = [m for m in KEY_METRICS if m in data.train.columns] or ranked[:4]
    keep = ["host", "ts", *[c for c in ("label", "incident") if c in data.train.columns], *metrics]
    hosts = _hosts_to_show(data)
    rows = pl.concat([f.select(keep).filter(pl.col("host").is_in(hosts)) for f in (data.train, data.val)])
    rows = rows.sort("host", "ts").with_columns(pl.col("ts").dt.replace_time_zone(None))  # naive UTC for matplotlib
    boundaries = dict(data.val.group_by("host").agg(pl.col("ts").min().dt.replace_time_zone(None)).iter_rows())
    windows = _incident_windows(rows) if data.labeled else {}
    kinds = sorted({kind for spans in windows.values() for _, _, kind in spans})
    colors = {k: _KIND_COLORS[i % len(_KIND_COLORS)] for i, k in enumerate(kinds)}

    fig = Figure(figsize=(5.5 * len(hosts) + 1, 2.2 * len(metrics) + 1.5), layout="constrained")
    axes = fig.subplots(len(metrics), len(hosts), sharex="col", squeeze=False)
    for col, host in enumerate(hosts):
        series = _downsample(rows.filter(pl.col("host") == host), metrics)
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            scale, unit = _display(data.units.get(metric, ""))
            ax.plot(series["ts"].to_numpy(), series[metric].to_numpy() / scale, color="0.2", linewidth=0.8)
            for start, end, kind in windows.get(host, []):
                # An edge keeps a minutes-long window visible on a days-long axis.
                ax.axvspan(start, end, facecolor=colors[kind], edgecolor=colors[kind], alpha=0.35, linewidth=1)
            if host in boundaries:
                ax.axvline(boundaries[host], color="black", linestyle="--", linewidth=1)
            ax.set_ylabel(f"{metric}\n[{unit}]" if col == 0 else "", fontsize=8)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
        axes[0, col].set_title(host, fontsize=10)
        locator = AutoDateLocator(maxticks=6)
        axes[-1, col].xaxis.set_major_locator(locator)
        axes[-1, col].xaxis.set_major_formatter(ConciseDateFormatter(locator))
        axes[-1, col].set_xlabel("time (UTC)", fontsize=9)
    handles = [Patch(color=colors[k], alpha=0.3, label=f"incident: {k}") for k in kinds]
    handles.append(axes[0, 0].plot([], [], color="black", linestyle="--", label="train | validation boundary")[0])
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=9)
    which = "hosts with labeled incidents" if kinds else "no labeled incidents; first hosts"
    return _finish(fig, f"Key metrics over time ({which}; averaged to ≤ {MAX_POINTS:,} points per host)", data, path)


def _hosts_to_show(data: _Data, most: int = 3) -> list[str]:
    """Up to `most` hosts with incidents, a new incident kind first; the first hosts when nothing is labeled."""
    if not data.labeled:
        return sorted(set(data.train["host"].unique()))[: min(most, 2)]
    incidents = pl.concat([f.filter(pl.col("label") == 1).select("host", "incident") for f in (data.train, data.val)])
    first_of_each_kind = incidents.unique("incident", keep="first", maintain_order=True)["host"]
    return list(dict.fromkeys([*first_of_each_kind, *incidents["host"]]))[:most]


def _incident_windows(rows: pl.DataFrame) -> dict[str, list[tuple]]:
    """host -> (start, end, kind) of every run of consecutive incident rows of one kind."""
    step = rows.select(pl.col("ts").diff().over("host").median()).item()
    kind = pl.when(pl.col("label") == 1).then(pl.col("incident").fill_null("incident")).otherwise(pl.lit(""))
    runs = (
        rows.with_columns(kind=kind)
        .with_columns(run=pl.col("kind").rle_id().over("host"))
        .filter(pl.col("kind") != "")
        .group_by("host", "run")
        .agg(start=pl.col("ts").min(), end=pl.col("ts").max() + step, kind=pl.col("kind").first())
    )
    windows: dict[str, list[tuple]] = {}
    for host, start, end, kind in runs.select("host", "start", "end", "kind").iter_rows():
        windows.setdefault(host, []).append((start, end, kind))
    return windows


def _downsample(series: pl.DataFrame, metrics: list[str]) -> pl.DataFrame:
    """Means of consecutive row buckets, so a long series keeps its shape in at most MAX_POINTS points."""
    size = -(-series.height // MAX_POINTS)
    if size <= 1:
        return series
    buckets = series.group_by(pl.int_range(pl.len()) // size, maintain_order=True)
    return buckets.agg(pl.col("ts").first(), pl.col(metrics).mean())


def _preprocessing(data: _Data, ranked: list[str], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator, SymmetricalLogLocator

    names = [m for m in KEY_METRICS if m in data.stats] or ranked[:4]
    train = data.train_sample
    raw, scaled = train.select(names).to_numpy(), data.scaled(train, names)
    fig = Figure(figsize=(12, 2.4 * len(names) + 3.2), layout="constrained")
    axes = fig.subplot_mosaic([["raw", "scaled"], *[[f"raw{i}", f"scaled{i}"] for i in range(len(names))]],
                              height_ratios=[1.4] + [1] * len(names))  # fmt: skip
    finite = [column[np.isfinite(column)] for column in raw.T]
    axes["raw"].boxplot(finite, whis=(1, 99), showfliers=False)
    axes["raw"].set_yscale("symlog", linthresh=1.0)
    axes["raw"].yaxis.set_major_locator(SymmetricalLogLocator(base=100.0, linthresh=1.0))  # every 2nd decade: readable
    axes["raw"].set_title("raw: each feature in its own unit (symlog scale)", fontsize=10)
    axes["scaled"].boxplot([column[np.isfinite(column)] for column in scaled.T], whis=(1, 99), showfliers=False)
    axes["scaled"].set_title("after standard scaling: comparable ranges", fontsize=10)
    for key in ("raw", "scaled"):
        axes[key].set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    axes["raw"].set_ylabel("raw value", fontsize=9)
    axes["scaled"].set_ylabel("z-score", fontsize=9)
    for i, name in enumerate(names):
        scale, unit = _display(data.units.get(name, ""))
        mean, std = data.stats[name]
        values = finite[i]
        low, high = np.percentile(values, [0.5, 99.5]) if values.size else (mean - std, mean + std)
        bins = np.linspace(low, high if high > low else low + 1.0, 50)
        axes[f"raw{i}"].hist(np.clip(values, bins[0], bins[-1]) / scale, bins=bins / scale, color="tab:gray",
                             log=True, histtype="stepfilled")  # fmt: skip
        axes[f"raw{i}"].axvline(mean / scale, color="black", linewidth=1)
        axes[f"raw{i}"].set_xlabel(f"{name} [{unit}]", fontsize=9)
        z_bins = (bins - mean) / std
        axes[f"scaled{i}"].hist(np.clip((values - mean) / std, z_bins[0], z_bins[-1]), bins=z_bins, color="tab:blue",
                                log=True, histtype="stepfilled")  # fmt: skip
        axes[f"scaled{i}"].axvline(0.0, color="black", linewidth=1)
        z_label = f"{name} [z-score: (x − {mean / scale:.3g}) / {std / scale:.3g} {unit}]"
        axes[f"scaled{i}"].set_xlabel(z_label, fontsize=9)
        for key in (f"raw{i}", f"scaled{i}"):
            axes[key].yaxis.set_minor_locator(NullLocator())  # log minor ticks: half the drawing time, no information
            axes[key].set_ylabel("rows (log)", fontsize=8)
            axes[key].tick_params(labelsize=8)
    title = (f"Preprocessing effects: raw vs standard-scaled with train statistics ({train.height:,} train rows "
             "sampled)\nboxes: quartiles, whiskers: 1st–99th percentile; histograms: tails clipped to 0.5–99.5th, "
             "line: train mean")  # fmt: skip
    return _finish(fig, title, data, path)


def _display(unit: str) -> tuple[float, str]:
    """The divisor and unit that make a value readable: bytes in GiB, bytes/s in MB/s."""
    return _DISPLAY.get(unit, (1.0, unit or "value"))


def _finish(fig, title: str, data: _Data, path: Path) -> Path:
    """Title (naming the data source) and save."""
    fig.suptitle(f"{title}  ·  data: {data.source}", fontsize=11)
    fig.savefig(path, dpi=100)
    return path
