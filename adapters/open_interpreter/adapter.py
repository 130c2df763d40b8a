"""The Open Interpreter adapter: ``aios.patch("open_interpreter")`` runs Open Interpreter on the kernel.

For Open Interpreter 0.4.x. Three patch targets, all at class or module level, so every
``OpenInterpreter`` instance is covered, the module-level ``interpreter`` singleton included:

- ``Llm.__getattribute__``: ``llm.completions`` (Open Interpreter's documented LLM hook) is set in
  ``Llm.__init__`` to the module function ``fixed_litellm_completions``; that instance attribute
  is bound before anyone can patch, so reading it is intercepted instead. While patched, an
  ``Llm`` whose ``completions`` is still that default answers with ``KernelCompletions`` (one LLM
  syscall per call, litellm stream chunks back); a ``completions`` the user set is left alone.
- ``Terminal.run``: every code execution is a tool syscall ``open_interpreter.<language>``
  (see ``execution.py``); the code runs in Open Interpreter's own terminal as before.
- ``send_telemetry`` (as ``interpreter.core.core`` uses it) does nothing: ``chat()`` would
  otherwise post to a remote server with no timeout, which hangs offline.

Syscalls belong to the agent of the enclosing ``with aios.sdk.agent(name):`` scope, else to the
interpreter's ``name`` attribute if it has one, else to ``"open_interpreter"`` (a scope does not
reach into the thread ``chat(blocking=False)`` starts). The forcing of the ``execute`` tool is
described in ``completions.py``.

Offline traps handled when the adapter is made (before Open Interpreter is imported), each only
if the variable is unset: ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (else litellm fetches a price map
at import) and ``TIKTOKEN_CACHE_DIR`` pointing at the tokenizer files litellm bundles (else
tiktoken downloads them when Open Interpreter trims the context).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from aios.adapters.base import PatchTarget

from .completions import KernelCompletions
from .execution import wrap_terminal_run

_LLM_MODULE = "interpreter.core.llm.llm"
_DEFAULT_COMPLETIONS = "fixed_litellm_completions"


def bundled_tokenizers() -> str | None:
    """The directory of tiktoken files shipped inside litellm, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "litellm_core_utils" / "tokenizers"
        if path.is_dir():
            return str(path)
    return None


def prepare_offline_env(environ: MutableMapping[str, str] | None = None) -> None:
    """Set the variables that keep litellm and tiktoken off the network, where they are unset."""
    env = os.environ if environ is None else environ
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if "TIKTOKEN_CACHE_DIR" not in env:
        path = bundled_tokenizers()
        if path is not None:
            env["TIKTOKEN_CACHE_DIR"] = path


def wrap_llm_getattribute(original: Callable[[Any, str], Any], default: object) -> Callable[[Any, str], Any]:
    """``Llm.__getattribute__`` that serves the default ``completions`` from the kernel."""

    def __getattribute__(self: Any, name: str) -> Any:
        value = original(self, name)
        if name == "completions" and value is default:
            return KernelCompletions(self)
        return value

    return __getattribute__


def no_telemetry(*args: Any, **kwargs: Any) -> None:
    """Stands in for Open Interpreter's ``send_telemetry`` while patched: sends nothing."""


class OpenInterpreterAdapter:
    """Patch targets for Open Interpreter 0.4: the LLM hook, code execution and telemetry."""

    name = "open_interpreter"
    framework = "interpreter"

    def targets(self) -> list[PatchTarget]:
        """The class- and module-level attributes every interpreter instance goes through."""
        prepare_offline_env()
        default = getattr(importlib.import_module(_LLM_MODULE), _DEFAULT_COMPLETIONS)
        return [
            PatchTarget(
                f"{_LLM_MODULE}.Llm.__getattribute__",
                lambda original: wrap_llm_getattribute(original, default),
            ),
            PatchTarget("interpreter.core.computer.terminal.terminal.Terminal.run", wrap_terminal_run),
            PatchTarget("interpreter.core.core.send_telemetry", lambda original: no_telemetry),
        ]


def make_adapter() -> OpenInterpreterAdapter:
    """The adapter instance ``aios.patch("open_interpreter")`` uses (prepares the offline env first)."""
    prepare_offline_env()
    return OpenInterpreterAdapter()
