"""The pack registry: discovery, loading, settings checks, and the output contract of compute_all."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta, timezone

import polars as pl
import pytest

from amoskys.errors import ConfigError
from amoskys.pipeline import packs
from amoskys.pipeline.features import DOMAIN

DEMO_PACK = '''
import polars as pl
from amoskys.pipeline.features import DOMAIN, Feature

class Demo:
    name = "demo"
    enabled_by_default = False
    description = "Doubles cpu_busy_pct."

    def settings(self, raw):
        return dict(raw)

    def features(self, settings):
        return [Feature("cpu_busy_double", DOMAIN, "percent", "Twice cpu_busy_pct.", ("cpu_busy_pct",), pack="demo")]

    def compute(self, frame, flows, settings):
        return frame.with_columns(cpu_busy_double=pl.col("cpu_busy_pct") * 2){tail}

PACK = Demo()
'''


def _frame() -> pl.DataFrame:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame({
        "host": ["a"] * 3 + ["b"] * 3,
        "ts": [start + timedelta(seconds=5 * i) for i in range(3)] * 2,
        "cpu_busy_pct": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
    }).with_columns(pl.col("ts").dt.cast_time_unit("ns"))  # fmt: skip


@pytest.fixture
def demo_pack(tmp_path, monkeypatch):
    """Writes the demo pack into a folder on this package's search path; yields a function to write it."""
    monkeypatch.setattr(packs, "__path__", [*packs.__path__, str(tmp_path)])

    def write(tail: str = "") -> None:
        (tmp_path / "demo.py").write_text(DEMO_PACK.replace("{tail}", tail))
        sys.modules.pop("amoskys.pipeline.packs.demo", None)

    yield write
    sys.modules.pop("amoskys.pipeline.packs.demo", None)


def test_available_lists_the_shipped_packs_with_their_defaults():
    found = packs.available()
    assert {"security", "healthcare", "cold_chain"} <= set(found)
    assert found["security"].enabled_by_default
    assert not found["healthcare"].enabled_by_default and not found["cold_chain"].enabled_by_default
    assert all(pack.description for pack in found.values())


def test_a_new_file_in_the_package_is_a_new_pack(demo_pack):
    demo_pack()
    assert "demo" in packs.available()
    loaded = packs.load(("demo",), {})
    out = packs.compute_all(_frame(), pl.DataFrame(), loaded)
    assert out["cpu_busy_double"].to_list() == [20.0, 40.0, 60.0, 80.0, 100.0, 120.0]
    assert [f.name for f in packs.declared(loaded)] == ["cpu_busy_double"]


def test_discover_finds_packs_in_any_package(tmp_path, monkeypatch):
    (tmp_path / "site_packs").mkdir()
    (tmp_path / "site_packs" / "__init__.py").write_text("")
    (tmp_path / "site_packs" / "demo.py").write_text(DEMO_PACK.replace("{tail}", ""))
    (tmp_path / "site_packs" / "_helpers.py").write_text("X = 1\n")  # private modules are not packs
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert list(packs.discover("site_packs")) == ["demo"]
    finally:
        for name in ("site_packs", "site_packs.demo", "site_packs._helpers"):
            sys.modules.pop(name, None)


def test_compute_all_rejects_undeclared_output(demo_pack):
    demo_pack(tail=".with_columns(sneaky=pl.lit(1.0))")
    with pytest.raises(ConfigError, match="pack demo: output columns differ.*sneaky"):
        packs.compute_all(_frame(), pl.DataFrame(), packs.load(("demo",), {}))


def test_compute_all_rejects_reordered_rows(demo_pack):
    demo_pack(tail=".reverse()")
    with pytest.raises(ConfigError, match="pack demo: output rows differ"):
        packs.compute_all(_frame(), pl.DataFrame(), packs.load(("demo",), {}))


def test_unknown_pack_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown pack 'helthcare' \(available: .*cold_chain, healthcare, security"):
        packs.load(("security", "helthcare"), {})
    with pytest.raises(ConfigError, match=r"packs.helthcare: no such pack"):
        packs.load(("security",), {"helthcare": {}})


def test_settings_of_packs_not_enabled_are_left_alone():
    loaded = packs.load(("security", "security"), {"healthcare": {"after_hours": "not checked"}})
    assert [(pack.name, settings) for pack, settings in loaded] == [("security", {})]


def test_load_fills_in_defaults():
    (_, settings), = packs.load(("cold_chain",), {"cold_chain": {"min_celsius": 0}})
    assert settings == {"min_celsius": 0.0, "max_celsius": 8.0, "max_rate_celsius_per_min": None,
                        "interval_seconds": None}  # fmt: skip


@pytest.mark.parametrize(
    ("pack", "table", "key"),
    [
        ("security", {"baseline": 3}, "packs.security.baseline"),
        ("healthcare", {"allowed_destinations": ["10.0.0.0/33"]}, "packs.healthcare.allowed_destinations"),
        ("healthcare", {"allowed_destinations": "10.0.0.0/8"}, "packs.healthcare.allowed_destinations"),
        ("healthcare", {"allowed_destinations": [10]}, "packs.healthcare.allowed_destinations"),
        ("healthcare", {"after_hours": [19, 25]}, "packs.healthcare.after_hours"),
        ("healthcare", {"after_hours": [19]}, "packs.healthcare.after_hours"),
        ("healthcare", {"interval_seconds": 0}, "packs.healthcare.interval_seconds"),
        ("cold_chain", {"min_celsius": "cold"}, "packs.cold_chain.min_celsius"),
        ("cold_chain", {"max_celsius": True}, "packs.cold_chain.max_celsius"),
        ("cold_chain", {"min_celsius": 9.0}, "packs.cold_chain.min_celsius"),
        ("cold_chain", {"max_rate_celsius_per_min": -1}, "packs.cold_chain.max_rate_celsius_per_min"),
        ("cold_chain", {"maximum": 8}, "packs.cold_chain.maximum"),
    ],
)
def test_bad_settings_name_the_key(pack, table, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        packs.load((pack,), {pack: table})


@pytest.mark.parametrize("name", ["security", "healthcare", "cold_chain"])
def test_declarations_are_complete(name):
    pack = packs.available()[name]
    features = pack.features({})
    assert features and len({f.name for f in features}) == len(features)
    for feature in features:
        assert (feature.stage, feature.pack) == (DOMAIN, name)
        assert feature.unit and feature.description and feature.inputs
        assert feature.streamable


def test_compute_all_rejects_a_feature_that_is_already_a_column(demo_pack):
    demo_pack()
    frame = _frame().with_columns(cpu_busy_double=pl.lit(0.0))
    with pytest.raises(ConfigError, match="pack demo: feature cpu_busy_double is already a column"):
        packs.compute_all(frame, pl.DataFrame(), packs.load(("demo",), {}))
