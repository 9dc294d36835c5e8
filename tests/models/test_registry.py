"""The registry on its own: entries written whole, found by id or model name, pruned per model."""

from __future__ import annotations

import json

import pytest

from amoskys.errors import InputError
from amoskys.models.registry import Registry

from .conftest import fit, make_detector


def test_entries_are_found_by_id_or_latest_of_a_model_and_pruned_per_model(tmp_path, fleet_train, fleet_test):
    registry = Registry(tmp_path / "registry")
    with pytest.raises(InputError, match="run `amoskys train` first"):
        registry.find()
    pca = fit(make_detector("pca"), fleet_train.frame)
    iforest = fit(make_detector("iforest"), fleet_train.frame)
    added = [registry.add(model, {"note": n}) for n, model in enumerate((pca, iforest, pca, pca))]
    assert len({entry.id for entry in added}) == 4  # same second, same model: still distinct ids
    assert not list((tmp_path / "registry").glob(".*"))  # no partial entry left behind
    assert registry.find().id == added[-1].id  # no bdh: the latest of any model
    assert registry.find("pca").id == added[3].id and registry.find(added[0].id).id == added[0].id
    card = json.loads((added[1].folder / "card.json").read_text())
    assert card["model"] == "iforest" and card["note"] == 1 and card["files"] == ["model.joblib"]
    loaded = registry.load(registry.find("iforest"))
    assert (loaded.score_samples(fleet_test.frame) == iforest.score_samples(fleet_test.frame)).all()

    gone = registry.prune(keep=1)
    assert sorted(e.id for e in gone) == sorted(e.id for e in added[:3] if e.model == "pca")
    assert sorted(e.id for e in registry.entries()) == sorted([added[1].id, added[3].id])
    with pytest.raises(InputError, match="no model 'nope'"):
        registry.find("nope")


def test_an_entry_copied_in_is_whole_and_a_partial_one_is_no_entry(tmp_path, fleet_train, fleet_test):
    source, target = Registry(tmp_path / "candidates"), Registry(tmp_path / "active")
    entry = source.add(fit(make_detector("pca"), fleet_train.frame), {"note": "candidate"})
    target.folder.mkdir()
    # what a copy cut short (a scheduled retrain stopped mid-promotion) leaves: ignored, and replaced by a copy
    (target.folder / f".{entry.id}.partial").mkdir()
    (target.folder / f".{entry.id}.partial" / "card.json").write_text((entry.folder / "card.json").read_text())
    assert target.entries() == []
    copied = target.copy_in(entry)
    assert [e.id for e in target.entries()] == [entry.id] and copied.card == entry.card
    assert not list(target.folder.glob(".*"))
    loaded, original = target.load(copied), source.load(entry)
    assert (loaded.score_samples(fleet_test.frame) == original.score_samples(fleet_test.frame)).all()
