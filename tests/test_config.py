from pathlib import Path

import pytest

from amoskys import config
from amoskys.errors import ConfigError


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "amoskys.toml"
    path.write_text(text)
    return path


def test_defaults_work_without_a_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.STORE_ENV, raising=False)
    loaded = config.load(None)
    assert loaded.store.path == Path("data/amoskys.db")
    assert loaded.simulator.hosts == 8


def test_sections_override_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv(config.STORE_ENV, raising=False)
    path = write(tmp_path, '[store]\npath = "x/y.db"\n[simulator]\nhosts = 3\nduration_seconds = 60\n')
    loaded = config.load(path)
    assert loaded.store.path == Path("x/y.db")
    assert loaded.simulator.hosts == 3 and loaded.simulator.duration_seconds == 60.0


def test_environment_names_the_store(monkeypatch, tmp_path):
    monkeypatch.setenv(config.STORE_ENV, str(tmp_path / "env.db"))
    assert config.load(write(tmp_path, '[store]\npath = "file.db"\n')).store.path == tmp_path / "env.db"


@pytest.mark.parametrize(
    "text, names",
    [
        ("[stor]\npath = 'a'\n", "[stor]"),
        ("[store]\npth = 'a'\n", "store.pth"),
        ("[simulator]\nhosts = 'many'\n", "simulator.hosts"),
        ("[simulator]\nhosts = true\n", "simulator.hosts"),
        ("[simulator]\nseed = -1\n", "simulator.seed"),
        ("[store\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, names):
    with pytest.raises(ConfigError, match=names.replace("[", r"\[")):
        config.load(write(tmp_path, text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        config.load(tmp_path / "missing.toml")
