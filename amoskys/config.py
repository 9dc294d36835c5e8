"""Configuration: one TOML file, a section per component, defaults for one machine.

Read from ``--config FILE``, else ``amoskys.toml`` in the working directory if there
is one, else the defaults below. Every key is checked on load, and an error names
the key. The store's path can also come from the ``AMOSKYS_STORE`` environment
variable; ``--store`` on the command line wins over both.

>>> load(None).store.path
PosixPath('data/amoskys.db')
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from amoskys.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("amoskys.toml")
STORE_ENV = "AMOSKYS_STORE"


@dataclass(frozen=True)
class StoreConfig:
    path: Path = Path("data/amoskys.db")
    max_future_seconds: float = 300.0  # events stamped further ahead of our clock are rejected


@dataclass(frozen=True)
class SimulatorConfig:
    hosts: int = 8
    duration_seconds: float = 7200.0
    interval_seconds: float = 5.0
    seed: int = 7


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)


def load(path: str | Path | None) -> Config:
    """The configuration from path (or the default file, if present), validated."""
    if path is None:
        path = DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    sections = {f.name: f.default_factory for f in fields(Config)}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ConfigError(f"config {path}: unknown section [{unknown[0]}] (known: {', '.join(sections)})")
    config = Config(**{name: _section(name, make, raw.get(name, {}), path) for name, make in sections.items()})
    env_store = os.environ.get(STORE_ENV)
    if env_store:
        config = Config(store=StoreConfig(Path(env_store), config.store.max_future_seconds), simulator=config.simulator)
    return config


def _section(name: str, make, values, path):
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    defaults = make()
    kinds = {f.name: type(getattr(defaults, f.name)) for f in fields(defaults)}
    checked = {}
    for key, value in values.items():
        if key not in kinds:
            raise ConfigError(f"config {path}: unknown key {name}.{key} (known: {', '.join(kinds)})")
        checked[key] = _coerce(f"{name}.{key}", value, kinds[key], path)
    return type(defaults)(**checked)


def _coerce(key: str, value, kind: type, path):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if issubclass(kind, Path) and isinstance(value, str):
        return Path(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"config {path}: {key} must be {kind.__name__}, not {type(value).__name__} {value!r}")
    if isinstance(value, (int, float)) and value < 0:
        raise ConfigError(f"config {path}: {key} must not be negative (got {value})")
    return value
