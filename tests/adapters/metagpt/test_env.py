"""The private MetaGPT project root: minimal config, nothing in the home or working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

import yaml

from aios.adapters.metagpt.env import MINIMAL_LLM, ROOT_VAR, config_yaml, prepare_metagpt_env, write_config
from aios.errors import ConfigError
from tests.adapters.metagpt.support import ROOT

REPO = Path(__file__).resolve().parents[3]


def test_the_minimal_config_is_an_openai_llm_section_with_overrides() -> None:
    parsed = yaml.safe_load(config_yaml({"max_token": 64, "model": 'odd "name"'}))
    assert parsed == {"llm": {**MINIMAL_LLM, "max_token": 64, "model": 'odd "name"'}}


def test_a_setting_that_is_not_a_scalar_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        config_yaml({"proxy": {"http": "x"}})
    assert info.value.field == "llm.proxy"


def test_write_config_puts_config2_yaml_under_config(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    assert path == tmp_path / "config" / "config2.yaml"
    assert yaml.safe_load(path.read_text()) == {"llm": dict(MINIMAL_LLM)}


def test_once_metagpt_is_imported_its_root_is_returned_unchanged(tmp_path: Path) -> None:
    assert prepare_metagpt_env(tmp_path) == ROOT
    assert not any(tmp_path.iterdir())


@pytest.fixture
def before_metagpt_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if MetaGPT were not imported yet, with no project root chosen."""
    monkeypatch.delitem(sys.modules, "metagpt.const")
    monkeypatch.delenv(ROOT_VAR, raising=False)


def test_without_a_root_a_private_temporary_one_gets_the_config_and_the_variable(
    before_metagpt_import: None,
) -> None:
    root = prepare_metagpt_env(llm={"max_token": 7})
    assert os.environ[ROOT_VAR] == str(root)
    assert root.name.startswith("aios-metagpt-") and root.parent == Path(tempfile.gettempdir())
    assert yaml.safe_load((root / "config" / "config2.yaml").read_text())["llm"]["max_token"] == 7


def test_a_root_the_user_already_chose_is_kept_and_nothing_is_written(
    before_metagpt_import: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ROOT_VAR, str(tmp_path))
    assert prepare_metagpt_env() == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_an_existing_config_in_the_given_root_is_not_overwritten(
    before_metagpt_import: None, tmp_path: Path
) -> None:
    config = tmp_path / "config" / "config2.yaml"
    config.parent.mkdir()
    config.write_text("llm: {api_type: ollama, model: mine}\n")
    assert prepare_metagpt_env(tmp_path, llm={"max_token": 7}) == tmp_path
    assert config.read_text() == "llm: {api_type: ollama, model: mine}\n"
    assert os.environ[ROOT_VAR] == str(tmp_path)


def test_a_root_that_is_a_file_is_a_config_error_naming_it(
    before_metagpt_import: None, tmp_path: Path
) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        prepare_metagpt_env(path)
    assert info.value.field == "root"
    assert ROOT_VAR not in os.environ


@pytest.mark.slow
def test_patching_in_a_fresh_process_writes_nothing_to_home_or_the_working_directory(tmp_path: Path) -> None:
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "METAGPT_PROJECT_ROOT"}
    env.update(HOME=str(home), PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    script = (
        "import os, aios.adapters.registry as r; r.patch('metagpt');"
        "import metagpt.roles, metagpt.const as c;"
        "root = os.environ['METAGPT_PROJECT_ROOT'];"
        "print(root, c.METAGPT_ROOT, os.path.isfile(os.path.join(root, 'config', 'config2.yaml')),"
        " os.path.isdir(os.path.join(root, 'logs')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=True,
    )
    root, metagpt_root, has_config, has_logs = out.stdout.split()[-4:]
    assert root == metagpt_root and Path(root).name.startswith("aios-metagpt-")
    assert (has_config, has_logs) == ("True", "True")
    assert not (home / ".metagpt").exists()
    assert list(cwd.iterdir()) == []
    assert not Path(root).exists()  # removed when the process exited
