"""Configuration: TOML file, environment, overrides, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.config import load_config
from aios.errors import ConfigError


def test_defaults_run_the_embedded_model():
    cfg = load_config(env={})
    assert [(b.name, b.kind) for b in cfg.backends] == [("embedded", "llamacpp")]
    assert cfg.scheduler == "fair"


def test_file_then_env_then_overrides(tmp_path: Path):
    path = tmp_path / "aios.toml"
    path.write_text(
        '[kernel]\nscheduler = "rr"\nslice_tokens = 8\n'
        '[[kernel.backends]]\nname = "a"\nkind = "sim"\ncapacity = 2\n'
    )
    cfg = load_config(path, env={})
    assert (cfg.scheduler, cfg.slice_tokens) == ("rr", 8)
    assert cfg.backends[0].options == {"capacity": 2}
    cfg = load_config(env={"AIOS_CONFIG": str(path), "AIOS_SCHEDULER": "fifo"})
    assert cfg.scheduler == "fifo"
    cfg = load_config(path, env={"AIOS_SCHEDULER": "fifo"}, overrides={"scheduler": "priority"})
    assert cfg.scheduler == "priority"


def test_a_base_url_in_the_environment_selects_an_openai_compatible_core():
    cfg = load_config(
        env={"AIOS_BASE_URL": "http://127.0.0.1:8000/v1", "AIOS_MODEL": "m", "AIOS_CAPACITY": "16"}
    )
    (b,) = cfg.backends
    assert b.kind == "openai" and b.options == {
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "m",
        "capacity": 16,
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("slice_tokens = -3", "slice_tokens"),
        ("speed = 11", "speed"),
        ("backends = 3", "backends"),
        ('[[backends]]\nname = "x"', "backends[0].kind"),
        ("this is not toml", "AIOS_CONFIG"),
        ('default_core = "ghost"', "default_core"),
    ],
)
def test_bad_files_name_the_offending_setting(tmp_path: Path, text: str, field: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.field == field


def test_a_missing_config_file_is_reported():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/aios.toml", env={})
