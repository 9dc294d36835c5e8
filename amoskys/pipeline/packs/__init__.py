"""Domain packs: stage-4 features for one domain each, found by discovery.

A pack is a module in this package (any name not starting with ``_``) that exposes
``PACK``, an object with:

- ``name``, ``enabled_by_default``, ``description``;
- ``settings(raw: dict) -> dict``: the ``[packs.NAME]`` table checked (unknown key or
  wrong type -> ``ConfigError`` naming ``packs.NAME.KEY``) with defaults filled in;
- ``features(settings: dict) -> list[Feature]``: its declarations (stage ``DOMAIN``,
  ``pack=name``);
- ``compute(frame, flows, settings) -> pl.DataFrame``: the stage-1 frame with exactly the
  declared columns added, same rows in the same order.

``features`` and ``compute`` accept the raw table as well as checked settings. Adding a
pack is adding one file here (``_common`` has helpers for them); the pipeline never names
a pack.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Protocol

import polars as pl

from amoskys.errors import ConfigError
from amoskys.pipeline.features import KEY_COLUMNS, Feature


class Pack(Protocol):
    name: str
    enabled_by_default: bool
    description: str

    def settings(self, raw: dict) -> dict: ...

    def features(self, settings: dict) -> list[Feature]: ...

    def compute(self, frame: pl.DataFrame, flows: pl.DataFrame, settings: dict) -> pl.DataFrame: ...


_INTERFACE = ("name", "enabled_by_default", "description", "settings", "features", "compute")


def discover(package: str) -> dict[str, Pack]:
    """Every pack module of ``package``, by pack name."""
    found: dict[str, Pack] = {}
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name.startswith("_"):
            continue
        pack = getattr(importlib.import_module(f"{package}.{module.name}"), "PACK", None)
        missing = [attr for attr in _INTERFACE if not hasattr(pack, attr)]
        if missing:
            raise ConfigError(f"pack module {package}.{module.name}: PACK lacks {', '.join(missing)}")
        if pack.name in found:
            raise ConfigError(f"pack module {package}.{module.name}: pack name {pack.name!r} is taken")
        found[pack.name] = pack
    return dict(sorted(found.items()))


def available() -> dict[str, Pack]:
    """The packs in this package, by name."""
    return discover(__name__)


def load(enabled: tuple[str, ...], settings: dict[str, dict]) -> list[tuple[Pack, dict]]:
    """The enabled packs, in order, each with its checked settings.

    ``settings`` are the ``[packs.NAME]`` tables; those of packs that exist but are not
    enabled are left alone, a table for a pack that does not exist is an error (a typo
    there would silently drop the user's settings).
    """
    packs = available()
    names = ", ".join(packs) or "none"
    for name in enabled:
        if name not in packs:
            raise ConfigError(f"pipeline.packs: unknown pack {name!r} (available: {names})")
    for name in settings:
        if name not in packs:
            raise ConfigError(f"packs.{name}: no such pack (available: {names})")
    return [(packs[name], packs[name].settings(settings.get(name, {}))) for name in dict.fromkeys(enabled)]


def declared(loaded: list[tuple[Pack, dict]]) -> list[Feature]:
    """The declarations of every loaded pack, in pack order."""
    return [feature for pack, settings in loaded for feature in pack.features(settings)]


def compute_all(frame: pl.DataFrame, flows: pl.DataFrame, loaded: list[tuple[Pack, dict]]) -> pl.DataFrame:
    """frame with every loaded pack's features added; a pack whose output breaks its declarations is an error."""
    added: list[pl.Series] = []
    taken = set(frame.columns)
    for pack, settings in loaded:
        names = [f.name for f in pack.features(settings)]
        clashes = sorted(taken.intersection(names))
        if clashes:
            raise ConfigError(f"pack {pack.name}: feature {clashes[0]} is already a column")
        taken.update(names)
        # Each pack sees the stage-1 frame only, so packs cannot come to depend on each other.
        out = pack.compute(frame, flows, settings)
        new = out.columns[frame.width :]
        if out.columns[: frame.width] != frame.columns or sorted(new) != sorted(names):
            extra, lacking = sorted(set(new) - set(names)), sorted(set(names) - set(new))
            raise ConfigError(
                f"pack {pack.name}: output columns differ from its declarations (undeclared: {extra or 'none'}, "
                f"missing: {lacking or 'none'}, or stage-1 columns changed)"
            )
        if out.height != frame.height or not out.select(KEY_COLUMNS).equals(frame.select(KEY_COLUMNS)):
            raise ConfigError(f"pack {pack.name}: output rows differ from the input frame's")
        added.extend(out.get_column(name) for name in names)
    return frame.with_columns(added)
