"""A private MetaGPT project root, so that importing MetaGPT needs no file in the user's home.

MetaGPT 0.8.2 reads ``$METAGPT_PROJECT_ROOT/config/config2.yaml`` (else ``~/.metagpt/config2.yaml``)
while ``metagpt.roles`` is imported and refuses to import without an ``llm`` section; it also
writes ``logs/``, ``workspace/`` and tool schemas under that project root (the current directory
when the variable is unset). ``prepare_metagpt_env`` points the variable at a fresh temporary
directory holding a minimal configuration, before MetaGPT fixes its root at import time. A user's
own ``~/.metagpt/config2.yaml`` is still read (MetaGPT merges it over the project one); it is never
written.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aios.errors import ConfigError

ROOT_VAR = "METAGPT_PROJECT_ROOT"

#: The ``llm`` section of the minimal configuration. Every call goes to the AIOS kernel, which maps
#: the model name to one of its cores; the key and URL only satisfy MetaGPT's validation (the URL is
#: a closed loopback port, so a call that somehow bypassed the adapter fails at once, locally).
MINIMAL_LLM: Mapping[str, Any] = {
    "api_type": "openai",
    "model": "gpt-4o-mini",
    "api_key": "unused",
    "base_url": "http://127.0.0.1:9/v1",
}


def config_yaml(llm: Mapping[str, Any] | None = None) -> str:
    """The text of a minimal ``config2.yaml``: ``MINIMAL_LLM`` updated with ``llm``."""
    section = {**MINIMAL_LLM, **(llm or {})}
    lines = ["llm:"]
    for key, value in section.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"MetaGPT llm setting names must be identifiers, got {key!r}", field="llm")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise ConfigError(
                f"MetaGPT llm setting {key!r} must be a string, number or boolean, "
                f"got {type(value).__name__}",
                field=f"llm.{key}",
            )
        # A JSON scalar is a valid YAML scalar, with quoting and escaping done right.
        lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_config(root: Path, llm: Mapping[str, Any] | None = None) -> Path:
    """Write ``root/config/config2.yaml`` (minimal, see ``config_yaml``); return its path."""
    path = root / "config" / "config2.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config_yaml(llm), encoding="utf-8")
    return path


def prepare_metagpt_env(root: str | Path | None = None, *, llm: Mapping[str, Any] | None = None) -> Path:
    """Give MetaGPT a project root with a minimal config; return the root MetaGPT will use.

    - MetaGPT already imported (``metagpt.const`` loaded): its root is fixed; it is returned as is.
    - ``METAGPT_PROJECT_ROOT`` already set and no ``root`` given: the user's choice is kept and
      nothing is written.
    - Otherwise ``root`` (default: a new temporary directory, removed when the process exits)
      gets ``config/config2.yaml`` unless it has one, and ``METAGPT_PROJECT_ROOT`` points at it.

    ``llm`` overrides settings of the minimal ``llm`` section, e.g. ``{"max_token": 64}``.
    ``aios.patch("metagpt")`` calls this with no arguments, so call it yourself first only to
    choose the directory or the settings.
    """
    const = sys.modules.get("metagpt.const")
    if const is not None:
        return Path(const.METAGPT_ROOT)
    current = os.environ.get(ROOT_VAR)
    if current and root is None:
        return Path(current)
    if root is None:
        path = Path(tempfile.mkdtemp(prefix="aios-metagpt-"))
        # MetaGPT keeps writing logs there until the process ends.
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    else:
        path = Path(root)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"MetaGPT project root {path} is not a directory", field="root")
    if not (path / "config" / "config2.yaml").exists():
        write_config(path, llm)
    os.environ[ROOT_VAR] = str(path)
    return path
