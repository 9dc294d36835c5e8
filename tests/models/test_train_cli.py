"""Train, list, show and score as a user runs them: real store -> pipeline -> `amoskys train` -> registry -> score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

AMOSKYS = str(Path(sys.executable).parent / "amoskys")
ALL_MODELS = {"iforest", "pca", "xgboost", "lstm_ae", "transformer_ae", "bdh", "live"}


def amoskys(*args, ok=True):
    proc = subprocess.run([AMOSKYS, *map(str, args)], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A small labeled fleet in a store, its pipeline outputs, and every default model trained on them."""
    root = tmp_path_factory.mktemp("train")
    store, data = root / "fleet.db", root / "data"
    amoskys("simulate", "--hosts", "3", "--duration", "10800", "--seed", "11", "--store", store)
    amoskys("pipeline", "run", "--store", store, "--out", data)
    out = amoskys("train", "--data", data).stdout
    return {"store": store, "data": data, "out": out, "registry": data / "registry"}


def test_train_registers_every_model_the_data_allows_and_prints_the_evaluation(trained):
    header, *rows = [line for line in trained["out"].splitlines() if line.strip()][1:-1]
    assert header.split()[:3] == ["model", "ROC-AUC", "PR-AUC"]
    assert {row.split()[0].rsplit("-", 1)[0] for row in rows} == ALL_MODELS
    entries = sorted(p.name for p in trained["registry"].iterdir())
    assert {name.split("-")[0] for name in entries} == ALL_MODELS and not any(n.startswith(".") for n in entries)


def test_each_entry_has_a_card_model_files_and_a_checked_onnx_export(trained):
    for folder in trained["registry"].iterdir():
        card = json.loads((folder / "card.json").read_text())
        assert card["data"]["source"] == "simulated" and len(card["data"]["sha256"]) == 64
        assert "uptime_seconds" not in card["features"] and len(card["features"]) >= 100
        assert card["training_seconds"] > 0 and card["threshold"] == pytest.approx(card["threshold"])
        validation = card["validation"]
        assert {"roc_auc", "pr_auc", "best_f1", "f1_at_threshold", "range_recall", "median_ttd_s",
                "false_alarms_per_host_hour"} <= set(validation)  # fmt: skip
        assert all((folder / f).exists() for f in card["files"])
        if card["model"] not in ("bdh", "live"):  # the ensembles' members carry their own exports
            parity = json.loads((folder / "onnx_parity.json").read_text())
            assert (folder / "model.onnx").exists() and parity["max_relative_difference"] < 1e-4


def test_models_list_and_show(trained):
    listing = amoskys("models", "list", "--data", trained["data"]).stdout.splitlines()
    assert listing[0].split()[:2] == ["id", "model"] and len(listing) == 1 + len(ALL_MODELS)
    card = json.loads(amoskys("models", "show", "bdh", "--data", trained["data"]).stdout)
    assert card["model"] == "bdh" and Path(card["folder"]).is_dir()
    missing = amoskys("models", "show", "nope", "--data", trained["data"], ok=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no model 'nope'" in missing.stderr


def test_score_a_feature_file_with_the_latest_ensemble(trained):
    val = trained["data"] / "val_features.parquet"
    result = json.loads(amoskys("score", "--data", trained["data"], "--input", val, "--json").stdout)
    assert result["model"].startswith("bdh-") and result["scored"] == pl.read_parquet(val).height
    assert result["rows"], "the validation split holds incidents: some rows must be flagged"
    row = result["rows"][0]
    assert 0 <= row["threat"] <= 100 and row["level"] in ("benign", "low", "medium", "high", "critical")
    assert set(row["members"]) >= {"iforest", "pca"} and len(row["features"]) == 5
    assert {"feature", "value", "typical"} <= set(row["features"][0])
    text = amoskys("score", "--data", trained["data"], "--input", val, "--model", "pca").stdout
    assert text.startswith("pca-") and "typical" in text


def test_score_refuses_a_file_without_the_model_features(trained, tmp_path):
    partial = tmp_path / "partial.csv"
    pl.read_parquet(trained["data"] / "val_features.parquet").drop("cpu_busy_pct", "lof_score").write_csv(partial)
    proc = amoskys("score", "--data", trained["data"], "--input", partial, ok=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "lacks 2 feature(s)" in proc.stderr and "cpu_busy_pct" in proc.stderr and "lof_score" in proc.stderr


def test_score_the_store_since_a_time(trained):
    result = json.loads(amoskys("score", "--data", trained["data"], "--store", trained["store"], "--since",
                                "2026-01-01T02:00:00Z", "--model", "iforest", "--all", "--json").stdout)  # fmt: skip
    assert result["scored"] == 3 * 12 * 60  # the last hour of three hosts at 5 s
    assert min(row["ts"] for row in result["rows"]) == "2026-01-01T02:00:00Z"


def test_train_refuses_a_folder_that_is_not_a_pipeline_output(tmp_path):
    proc = amoskys("train", "--data", tmp_path, ok=False)
    assert proc.returncode == 1 and "is not a pipeline output folder" in proc.stderr
    proc = amoskys("train", "--data", tmp_path, "--models", "nope", ok=False)
    assert proc.returncode == 1


def test_max_window_leaves_out_the_longer_windowed_features(trained):
    from amoskys.models.train import load_dataset
    from amoskys.pipeline.features import window_seconds

    every = load_dataset(trained["data"])
    short = load_dataset(trained["data"], max_window_s=60)
    declared = json.loads((trained["data"] / "feature_metadata.json").read_text())["features"]
    left_out = set(every.features) - set(short.features)
    assert left_out and all(window_seconds(declared[name]["window"]) > 60 for name in left_out)
    assert any(name.endswith("_300s") for name in left_out) and "cpu_busy_pct_mean_60s" in short.features
    assert "lof_score" in short.features  # no window: kept
