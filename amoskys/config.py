"""Configuration: one TOML file, a section per component, defaults for one machine.

Read from ``--config FILE``, else ``amoskys.toml`` in the working directory if there
is one, else the defaults below. Every key is checked on load, and an error names
the key. The store's path can also come from the ``AMOSKYS_STORE`` environment
variable; ``--store`` on the command line wins over both.

>>> load(None).store.path
PosixPath('data/amoskys.db')
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
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
class PipelineConfig:
    out: Path = Path("data/pipeline")
    interval_seconds: float = 5.0  # resampling step
    max_fill_seconds: float = 60.0  # longest gap forward-filled; longer gaps are dropped
    windows_seconds: tuple[float, ...] = (30.0, 60.0, 300.0)  # rolling windows, in time
    ewm_half_lives_seconds: tuple[float, ...] = (15.0, 60.0, 300.0)
    train_fraction: float = 0.8  # first share of each host's time range that is training data
    packs: tuple[str, ...] = ("security",)  # domain packs enabled
    hosts: tuple[str, ...] = ()  # hosts to read; empty means all
    since: str = ""  # time range to read (see `amoskys store query --help`); empty means all
    until: str = ""


@dataclass(frozen=True)
class BusConfig:
    host: str = "127.0.0.1"  # loopback unless told otherwise
    port: int = 7878
    certs: Path = Path("data/certs")  # from `amoskys certs init`
    max_message_bytes: int = 1_048_576
    max_skew_seconds: float = 300.0  # an envelope stamped further from the bus clock is a replay
    seq_window: int = 1024  # how far below an agent's highest sequence number a late envelope may be
    max_pending_batches: int = 64  # envelopes awaiting commit beyond this: answer RETRY
    metrics_port: int = 7879  # Prometheus text format on http://host:metrics_port/metrics; 0 turns it off


@dataclass(frozen=True)
class AgentConfig:
    bus: str = "127.0.0.1:7878"
    certs: Path = Path("data/certs")
    name: str = ""  # empty: the agent's kind (host, snmp, flow)
    interval_seconds: float = 5.0
    outbox_dir: Path = Path("data/outbox")  # one SQLite outbox per agent name
    outbox_max_bytes: int = 64 * 2**20  # when full, the oldest envelopes are dropped and counted
    batch_max_events: int = 500


@dataclass(frozen=True)
class SnmpConfig:
    targets: tuple[str, ...] = ()  # HOST:PORT of each device
    version: str = "2c"  # "2c" or "3"
    community: str = "public"  # v2c
    user: str = ""  # v3 (authPriv with SHA and AES when both keys are set)
    auth_key: str = ""
    priv_key: str = ""
    timeout_seconds: float = 2.0
    retries: int = 1


@dataclass(frozen=True)
class DetectConfig:
    name: str = "detector"  # its credentials' name in the certificates folder, like an agent's
    registry: Path = Path("data/pipeline/registry")  # where `amoskys train` registered the models
    model: str = "live"  # registry entry id, or a model name for its latest entry
    alert_level: str = "high"  # alert when a host stays at or above this threat band (low, medium, high, critical)
    alert_consecutive: int = 3  # for this many scored rows in a row
    alert_quiet_seconds: float = 60.0  # close an alert after this long below the level
    alert_budget_per_hour: int = 6  # new alerts per host per hour; more are suppressed and counted
    micro_batch_ms: float = 20.0  # longest wait to gather events into one scoring batch
    stale_seconds: float = 30.0  # a host silent this long is marked stale (never an alarm)
    drift_psi: float = 0.25  # population stability index of a feature above which it has drifted
    retrain_every_hours: float = 0.0  # 0: never; else the detector retrains this often and swaps in a promoted set
    retrain_since_hours: float = 24.0  # the recent telemetry a scheduled retrain learns from
    retrain_if_drifted: bool = False  # a scheduled retrain trains only when some feature has drifted


@dataclass(frozen=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    snmp: SnmpConfig = field(default_factory=SnmpConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    # [packs.NAME] tables: each domain pack checks its own settings.
    packs: dict[str, dict] = field(default_factory=dict)


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
    sections = {f.name: f.default_factory for f in fields(Config) if f.name != "packs"}
    unknown = sorted(set(raw) - set(sections) - {"packs"})
    if unknown:
        raise ConfigError(f"config {path}: unknown section [{unknown[0]}] (known: {', '.join(sections)}, packs)")
    packs = raw.get("packs", {})
    if not isinstance(packs, dict) or not all(isinstance(v, dict) for v in packs.values()):
        raise ConfigError(f"config {path}: [packs] must hold one table per pack, e.g. [packs.healthcare]")
    config = Config(
        **{name: _section(name, make, raw.get(name, {}), path) for name, make in sections.items()}, packs=packs
    )
    env_store = os.environ.get(STORE_ENV)
    if env_store:
        config = replace(config, store=replace(config.store, path=Path(env_store)))
    return config


def dump(config: Config) -> str:
    """config as TOML that ``load`` reads back to an equal Config (every key written)."""
    lines = []
    for section in fields(Config):
        value = getattr(config, section.name)
        tables = value.items() if section.name == "packs" else [(None, vars(value))]
        for pack, keys in tables:
            lines.append(f"[{section.name}]" if pack is None else f"[packs.{pack}]")
            lines += [f"{key} = {_toml_value(item)}" for key, item in keys.items()]
            lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(key))} = {_toml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def _section(name: str, make, values, path):
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    defaults = make()
    known = {f.name: getattr(defaults, f.name) for f in fields(defaults)}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"config {path}: unknown key {name}.{key} (known: {', '.join(known)})")
        checked[key] = _coerce(f"{name}.{key}", value, known[key], path)
    return type(defaults)(**checked)


def _coerce(key: str, value, default, path):
    """value checked against the type of the key's default (lists: element by element)."""
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"config {path}: {key} must be a list, not {type(value).__name__} {value!r}")
        element = default[0] if default else ""
        return tuple(_coerce(f"{key}[{i}]", item, element, path) for i, item in enumerate(value))
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(default, Path) and isinstance(value, str):
        return Path(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"config {path}: {key} must be {kind.__name__}, not {type(value).__name__} {value!r}")
    if isinstance(value, (int, float)) and value < 0:
        raise ConfigError(f"config {path}: {key} must not be negative (got {value})")
    return value
