from dataclasses import replace
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


def test_pipeline_lists_are_checked_element_by_element(tmp_path):
    loaded = config.load(write(tmp_path, "[pipeline]\nwindows_seconds = [10, 20.5]\npacks = ['security', 'healthcare']\n"))
    assert loaded.pipeline.windows_seconds == (10.0, 20.5)
    assert loaded.pipeline.packs == ("security", "healthcare")
    with pytest.raises(ConfigError, match=r"pipeline.windows_seconds\[1\] must be float"):
        config.load(write(tmp_path, "[pipeline]\nwindows_seconds = [10, 'x']\n"))
    with pytest.raises(ConfigError, match="pipeline.packs must be a list"):
        config.load(write(tmp_path, "[pipeline]\npacks = 'security'\n"))


def test_pack_settings_are_passed_through_as_tables(tmp_path):
    loaded = config.load(write(tmp_path, "[packs.cold_chain]\nmin_celsius = 2.0\n"))
    assert loaded.packs == {"cold_chain": {"min_celsius": 2.0}}
    with pytest.raises(ConfigError, match=r"\[packs\] must hold one table per pack"):
        config.load(write(tmp_path, "[packs]\ncold_chain = 3\n"))


def test_dump_reads_back_to_the_same_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.STORE_ENV, raising=False)
    defaults = config.load(None)
    changed = replace(
        defaults,
        agent=replace(defaults.agent, interval_seconds=1.0, name='odd "name" \\ here'),
        packs={"healthcare": {"allowed_destinations": ["10.0.0.0/8"], "hours": {"start": 8, "end": 18}}},
    )
    path = write(tmp_path, config.dump(changed))
    assert config.load(path) == changed
