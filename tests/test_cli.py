"""The `amoskys` command as a user runs it: the installed console script, in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

AMOSKYS = str(Path(sys.executable).parent / "amoskys")
SMALL = ["--hosts", "2", "--duration", "900", "--seed", "3"]


def amoskys(*args, cwd=None, ok=True):
    proc = subprocess.run([AMOSKYS, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_every_command():
    out = amoskys("--help").stdout
    for command in ("run", "simulate", "store", "pipeline"):
        assert f"    {command}" in out


@pytest.mark.parametrize(
    "command, options",
    [
        (["run"], ["--store", "--baseline-seconds", "--live-seconds", "--no-attack"]),
        (["pipeline", "run"], ["--store", "--out", "--config", "--verbose"]),
        (["simulate"], ["--hosts", "--duration", "--seed", "--store", "--out", "--start", "--interval"]),
        (["store", "stats"], ["--store", "--json"]),
        (["store", "query"], ["--store", "--host", "--since", "--until", "--limit", "--json"]),
    ],
)
def test_each_command_explains_its_options(command, options):
    out = amoskys(*command, "--help").stdout
    for option in options:
        assert option in out


def test_simulate_into_a_store_then_inspect_it(tmp_path):
    store = tmp_path / "s.db"
    out = amoskys("simulate", *SMALL, "--store", store).stdout
    assert "data_source: simulated" in out and "360 stored" in out

    stats = json.loads(amoskys("store", "stats", "--store", store, "--json").stdout)
    assert stats["counts"]["host_metrics"] == 360 and stats["counts"]["hosts"] == 2
    assert stats["data_source"] == "simulated" and stats["journal_mode"] == "wal"

    lines = amoskys("store", "query", "--store", store, "--host", "sim-host-01", "--since",
                    "2026-01-01T00:10:00Z", "--json").stdout.splitlines()  # fmt: skip
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 60  # the last 5 of 15 minutes at 5 s
    assert rows[0]["ts"] == "2026-01-01T00:10:00Z" and 0 <= rows[0]["metrics"]["cpu_user_pct"] <= 100

    text = amoskys("store", "query", "--store", store, "--host", "sim-host-01", "--limit", "3").stdout
    assert len(text.splitlines()) == 4 and "cpu_user_pct" in text.splitlines()[0]


PIPELINE_OUTPUTS = {
    "canonical_telemetry.csv", "canonical_telemetry.parquet", "train_features.csv", "train_features.parquet",
    "val_features.csv", "val_features.parquet", "feature_metadata.json", "pipeline_summary.json",
    "feature_correlations.png", "normalized_distributions.png", "temporal_patterns.png", "preprocessing_effects.png",
}  # fmt: skip


def test_pipeline_on_an_empty_store_uses_the_simulator_and_says_so(tmp_path):
    (tmp_path / "small.toml").write_text("[simulator]\nhosts = 2\nduration_seconds = 2400.0\n")
    out = amoskys("--config", tmp_path / "small.toml", "pipeline", "run", "--store", tmp_path / "empty.db",
                  "--out", tmp_path / "out")  # fmt: skip
    assert "data source  simulated" in out.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} >= PIPELINE_OUTPUTS
    summary = json.loads((tmp_path / "out" / "pipeline_summary.json").read_text())
    assert summary["data_source"] == "simulated"
    assert not (tmp_path / "empty.db").exists()  # reading an empty store creates none


def test_run_trains_on_a_baseline_scores_live_and_catches_the_loopback_attack(tmp_path):
    """`amoskys run` (what `make run` runs) in an empty folder: the live platform end to end (about 3 min)."""
    proc = subprocess.run([AMOSKYS, "run", "--baseline-seconds", "75", "--live-seconds", "45"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "stopped the detector, the agents and the bus" in out
    assert "attack on loopback" in out and "caught, " in out, out  # (a false alarm before it is possible: README)
    pipeline = tmp_path / "data" / "run" / "pipeline"
    assert {p.name for p in pipeline.iterdir()} >= PIPELINE_OUTPUTS
    assert json.loads((pipeline / "pipeline_summary.json").read_text())["data_source"] == "real"
    assert (tmp_path / "data" / "run" / "amoskys.toml").is_file()  # the run's settings, for --config


def test_pipeline_run_reads_the_store(tmp_path):
    store = tmp_path / "s.db"
    amoskys("simulate", *SMALL, "--store", store)
    out = amoskys("pipeline", "run", "--store", store, "--out", tmp_path / "out")
    assert "data source  simulated" in out.stdout  # the simulator filled the store, and the store says so
    summary = json.loads((tmp_path / "out" / "pipeline_summary.json").read_text())
    assert summary["rows"]["train"] + summary["rows"]["val"] == 2 * (180 - 1)  # first bucket per host has no rates


def test_default_store_lives_under_data_in_the_working_directory(tmp_path):
    amoskys("simulate", *SMALL, cwd=tmp_path)
    assert (tmp_path / "data" / "amoskys.db").is_file()


def test_simulate_to_parquet_is_labeled_and_deterministic(tmp_path):
    amoskys("simulate", *SMALL, "--out", tmp_path / "a.parquet")
    amoskys("simulate", *SMALL, "--out", tmp_path / "b.parquet")
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)
    assert a.schema.metadata[b"data_source"] == b"simulated"
    assert {"host", "ts_ns", "label", "incident", "cpu_user_pct"} <= set(a.column_names)
    incidents = pq.read_table(tmp_path / "a.incidents.parquet")
    assert incidents.column_names == ["host", "kind", "start_ns", "end_ns"]
    assert incidents.schema.metadata[b"data_source"] == b"simulated"


@pytest.mark.parametrize(
    "args, message",
    [
        (["store", "stats", "--store", "{tmp}/missing.db"], "no store at"),
        (["store", "stats", "--store", "{tmp}/notes.txt"], "not an AMOSKYS store"),
        (["store", "stats", "--store", "{tmp}"], "is a folder"),
        (["store", "query", "--store", "{tmp}/s.db", "--host", "nope"], "no host 'nope'"),
        (["store", "query", "--store", "{tmp}/s.db", "--host", "sim-host-00", "--since", "yesterday"], "cannot read time"),
        (["simulate", "--hosts", "0", "--store", "{tmp}/x.db"], "hosts"),
        (["simulate", "--out", "{tmp}/x.csv"], ".parquet"),
        (["--config", "{tmp}/bad.toml", "store", "stats"], "store.pth"),
        (["simulate", "--store", "{tmp}/notes.txt/x.db", "--hosts", "1", "--duration", "60"], "cannot create"),
        (["pipeline", "run", "--store", "{tmp}/s.db", "--out", "{tmp}/notes.txt/out"], "notes.txt"),
        (["--config", "{tmp}/range.toml", "pipeline", "run", "--store", "{tmp}/s.db", "--out", "{tmp}/o"], "no telemetry"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("my notes\n")
    (tmp_path / "bad.toml").write_text("[store]\npth = 'x'\n")
    (tmp_path / "range.toml").write_text("[pipeline]\nsince = '2020-01-01T00:00:00Z'\nuntil = '2020-01-02T00:00:00Z'\n")
    amoskys("simulate", "--hosts", "1", "--duration", "60", "--store", tmp_path / "s.db")
    proc = amoskys(*(a.format(tmp=tmp_path) for a in args), ok=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
