"""Datasets, feature_metadata.json and pipeline_summary.json on a small simulated fleet."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import amoskys
from amoskys.errors import InputError
from amoskys.pipeline.features import CANONICAL, TEMPORAL, Feature
from amoskys.pipeline.outputs import (
    feature_columns,
    feature_metadata,
    pipeline_summary,
    write_datasets,
    write_metadata,
    write_summary,
)

NAMES = ("canonical_telemetry", "train_features", "val_features")


@pytest.fixture(scope="module")
def written(simulated_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs") / "new" / "folder"  # created on demand
    s = simulated_split
    return out, write_datasets(out, s.canonical, s.train, s.val, s.data_source)


def test_datasets_are_written_as_parquet_and_csv(written):
    out, paths = written
    assert sorted(p.name for p in paths) == sorted(f"{n}.{ext}" for n in NAMES for ext in ("parquet", "csv"))
    assert all(p.parent == out and p.stat().st_size > 0 for p in paths)
    assert not list(out.glob(".*.tmp"))  # temporary files were renamed into place


def test_parquet_reads_back_equal_with_data_source_and_snappy(written, simulated_split):
    out, _ = written
    for name, frame in zip(NAMES, (simulated_split.canonical, simulated_split.train, simulated_split.val)):
        path = out / f"{name}.parquet"
        assert pl.read_parquet(path).equals(frame)
        meta = pq.ParquetFile(path).metadata
        assert meta.metadata[b"data_source"] == b"simulated"
        codecs = {meta.row_group(g).column(c).compression for g in range(meta.num_row_groups) for c in range(meta.num_columns)}
        assert codecs == {"SNAPPY"}


def test_csv_has_the_frame_header_rows_and_iso_utc_timestamps(written, simulated_split):
    out, _ = written
    frame = simulated_split.train
    with open(out / "train_features.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == frame.columns
    assert len(rows) - 1 == frame.height
    first_ts = rows[1][frame.columns.index("ts")]
    assert first_ts == frame["ts"][0].strftime("%Y-%m-%dT%H:%M:%SZ")
    back = pl.read_csv(out / "train_features.csv", try_parse_dates=True)
    assert back["ts"].dt.cast_time_unit("ns").equals(frame["ts"])
    assert back["cpu_busy_pct"].to_list() == pytest.approx(frame["cpu_busy_pct"].to_list())


def test_a_folder_that_cannot_be_made_is_one_input_error_line(tmp_path, simulated_split):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    s = simulated_split
    for write in (
        lambda out: write_datasets(out, s.canonical, s.train, s.val, s.data_source),
        lambda out: write_metadata(out, s.features, s.train, s.data_source),
        lambda out: write_summary(out, {"rows": 1}),
    ):
        with pytest.raises(InputError) as caught:
            write(blocker / "out")
        assert str(blocker / "out") in str(caught.value) and "\n" not in str(caught.value)


def test_metadata_documents_every_column_with_train_statistics(simulated_split, tmp_path):
    s = simulated_split
    meta = feature_metadata(s.features, s.train, s.data_source, fitted={"rows": np.int64(3), "offset": np.float32("nan")})
    assert list(meta["features"]) == feature_columns(s.train)
    assert meta["feature_count"] == len(s.features) == len(feature_columns(s.train))
    assert meta["data_source"] == "simulated" and meta["version"] == amoskys.__version__ and meta["generated_at"]
    assert meta["stats_split"] == "train" and meta["train_rows"] == s.train.height
    for name, entry in meta["features"].items():
        assert entry["unit"] and entry["description"] and entry["stage_name"] and entry["dtype"] == "float64"
        stats = entry["stats"]
        assert set(stats) == {"count", "nulls", "nonfinite", "mean", "std", "min", "p01", "p50", "p99", "max"}
        assert stats["count"] + stats["nulls"] + stats["nonfinite"] == s.train.height
        assert stats["min"] <= stats["p01"] <= stats["p50"] <= stats["p99"] <= stats["max"]
        column = s.train[name]
        assert stats["mean"] == pytest.approx(column.mean()) and stats["std"] == pytest.approx(column.std(), nan_ok=True)
    # Written as strict JSON: NumPy values made plain, NaN made null.
    path = write_metadata(tmp_path, s.features, s.train, s.data_source, meta["fitted"])
    written = json.loads(path.read_text())
    assert path.name == "feature_metadata.json" and list(written["features"]) == list(meta["features"])
    assert written["fitted"] == {"rows": 3, "offset": None}


def test_statistics_come_from_train_only(simulated_split):
    s = simulated_split
    before = feature_metadata(s.features, s.train, s.data_source)["features"]["cpu_busy_pct"]["stats"]
    # A changed validation value changes nothing: validation rows never reach the statistics.
    changed_val = s.val.with_columns(pl.col("cpu_busy_pct") * 1000)
    after = feature_metadata(s.features, s.train, s.data_source)["features"]["cpu_busy_pct"]["stats"]
    assert after == before
    assert before["max"] == s.train["cpu_busy_pct"].max() < changed_val["cpu_busy_pct"].max()
    everything = pl.concat([s.train, s.val])
    assert before["mean"] != pytest.approx(everything["cpu_busy_pct"].mean(), rel=1e-9)


def test_an_undeclared_column_fails(simulated_split):
    s = simulated_split
    with pytest.raises(ValueError, match="without a declaration: sneaky_ratio"):
        feature_metadata(s.features, s.train.with_columns(sneaky_ratio=pl.lit(1.0)), s.data_source)


def test_a_declaration_without_a_column_fails(simulated_split):
    s = simulated_split
    ghost = Feature("ghost_mean_30s", TEMPORAL, "percent", "A feature nothing computes.", ("cpu_busy_pct",), "30s")
    with pytest.raises(ValueError, match="declarations without a column: ghost_mean_30s"):
        feature_metadata([*s.features, ghost], s.train, s.data_source)


@pytest.mark.parametrize("change", [{"unit": ""}, {"description": "  "}, {"dtype": "int64"}])
def test_an_incomplete_or_wrong_declaration_fails(simulated_split, change):
    s = simulated_split
    features = [dataclasses.replace(f, **change) if f.name == "cpu_busy_pct" else f for f in s.features]
    with pytest.raises(ValueError, match="cpu_busy_pct"):
        feature_metadata(features, s.train, s.data_source)


def test_a_feature_declared_twice_fails(simulated_split):
    s = simulated_split
    twin = Feature("cpu_busy_pct", CANONICAL, "percent", "Again.", ("cpu_idle_pct",))
    with pytest.raises(ValueError, match="declared more than once: cpu_busy_pct"):
        feature_metadata([*s.features, twin], s.train, s.data_source)


def test_summary_counts(simulated_split, tmp_path):
    s = simulated_split
    stage_seconds = {"canonical": 0.25, "temporal": 0.5}
    summary = pipeline_summary(s.data_source, s.canonical, s.train, s.val, s.features, stage_seconds, s.report)
    assert summary["data_source"] == "simulated" and summary["version"] == amoskys.__version__
    assert summary["hosts"] == sorted(s.canonical["host"].unique()) and summary["host_count"] == 3
    assert summary["time_range"] == {"start": s.canonical["ts"].min().isoformat(), "end": s.canonical["ts"].max().isoformat()}
    assert summary["rows"] == {"canonical": s.canonical.height, "train": s.train.height, "val": s.val.height}
    assert summary["split_time_ranges"]["train"]["end"] < summary["split_time_ranges"]["val"]["start"]
    for split, frame in (("canonical", s.canonical), ("train", s.train), ("val", s.val)):
        labels = summary["labels"][split]
        assert labels["incident"] == frame["label"].sum() and labels["benign"] + labels["incident"] == frame.height
        assert sum(labels["by_kind"].values()) == labels["incident"]
    by_kind = s.canonical.filter(pl.col("label") == 1).group_by("incident").len()
    assert summary["labels"]["canonical"]["by_kind"] == dict(by_kind.iter_rows())
    assert summary["feature_count"] == len(s.features)
    assert summary["features_per_stage"] == {"canonical": len(s.features), "temporal": 0, "cross_feature": 0,
                                             "domain_pack": 0, "anomaly_aware": 0}  # fmt: skip
    assert summary["stage_seconds"] == {"canonical": 0.25, "temporal": 0.5, "total": 0.75}
    assert summary["canonical_report"] == dataclasses.asdict(s.report)
    path = write_summary(tmp_path, summary)
    assert path.name == "pipeline_summary.json" and json.loads(path.read_text())["rows"] == summary["rows"]


def test_summary_of_an_unlabeled_split(simulated_split):
    s = simulated_split
    unlabeled = s.val.drop("label", "incident")
    summary = pipeline_summary(s.data_source, s.canonical, s.train, unlabeled, s.features, {}, dataclasses.asdict(s.report))
    assert summary["labels"]["val"] is None and summary["stage_seconds"] == {"total": 0.0}
    assert not math.isnan(summary["labels"]["train"]["incident_share"])
