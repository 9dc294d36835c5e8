"""The four diagnostic PNGs, with and without labels."""

from __future__ import annotations

import struct

import pytest

from amoskys.errors import InputError
from amoskys.pipeline.outputs import feature_metadata
from amoskys.pipeline.plots import make_plots

PNGS = ("feature_correlations.png", "normalized_distributions.png", "temporal_patterns.png", "preprocessing_effects.png")


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's signature and IHDR chunk; fails on anything that is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def assert_four_readable_pngs(paths, out):
    assert [p.name for p in paths] == list(PNGS)
    for path in paths:
        assert path.parent == out
        width, height = png_size(path)
        assert 800 <= width <= 3000 and 600 <= height <= 3000
        assert 20_000 < path.stat().st_size < 5_000_000  # something was drawn; not a runaway image


def test_labeled_plots(simulated_split, tmp_path):
    s = simulated_split
    out = tmp_path / "plots"
    assert_four_readable_pngs(make_plots(out, s.train, s.val, s.features, s.data_source), out)


def test_unlabeled_plots_with_given_scaler_statistics(simulated_split, tmp_path):
    s = simulated_split
    train, val = s.train.drop("label", "incident"), s.val.drop("label", "incident")
    stats = {name: entry["stats"] for name, entry in feature_metadata(s.features, s.train, s.data_source)["features"].items()}
    out = tmp_path / "unlabeled"
    assert_four_readable_pngs(make_plots(out, train, val, s.features, "real", scaler_stats=stats), out)


def test_unwritable_folder_is_an_input_error(simulated_split, tmp_path):
    s = simulated_split
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match="a-file"):
        make_plots(blocker / "plots", s.train, s.val, s.features, s.data_source)
