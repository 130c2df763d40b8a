"""The ``metagpt`` adapter: MetaGPT 0.8.2 agents on the AIOS kernel, unchanged, after one line.

Usage — call ``aios.patch("metagpt")`` before importing ``metagpt.roles`` or ``metagpt.actions``
(importing them reads MetaGPT's configuration and fixes its project root)::

    import asyncio
    import aios

    aios.patch("metagpt")

    from metagpt.actions import Action
    from metagpt.roles import Role

    class SimpleWriteCode(Action):
        PROMPT_TEMPLATE: str = "Write a python function that can {instruction}."

        async def run(self, instruction: str) -> str:
            return await self._aask(self.PROMPT_TEMPLATE.format(instruction=instruction))

    class SimpleCoder(Role):
        name: str = "Alice"
        profile: str = "SimpleCoder"

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.set_actions([SimpleWriteCode])

    asyncio.run(SimpleCoder().run("write a function that adds two numbers"))
    print(aios.kernel_stats()["agents"]["Alice"]["by_kind"])   # {"llm": 1, "tool": 1}

What happens:

- Configuration: when neither ``METAGPT_PROJECT_ROOT`` is set nor MetaGPT imported yet, patching
  points ``METAGPT_PROJECT_ROOT`` at a new temporary directory with a minimal ``config2.yaml``
  (``api_type: openai``, ``model: gpt-4o-mini``, an unused key and a closed loopback URL) and
  MetaGPT writes its ``logs/`` and ``workspace/`` there, not into the current directory. Nothing
  is written to ``~/.metagpt``; a configuration the user keeps there is still read. To choose the
  directory or settings (say ``max_token``), call ``prepare_metagpt_env(root, llm={...})`` first.
- LLM calls: the provider primitives of MetaGPT's OpenAI provider family become LLM syscalls and
  return MetaGPT's own ``ChatCompletion`` / text; providers of other API types are replaced by a
  kernel-backed provider while patched (see ``llm.py``). The model name in the config is passed as
  ``model=`` and routed by the kernel; ``llm.max_token`` bounds the generation.
- Actions: each ``Action.run`` (of every subclass, including ones defined after patching, and
  ``ExecuteNbCode.run``, which runs generated code) is one tool syscall named by the action class.
- Identity: a role's syscalls carry the role's name (``with aios.sdk.agent("x"):`` overrides it);
  calls outside any role are agent ``"metagpt"``.
- Kernel: the one entered with ``async with aios.Kernel(...)`` in the calling task, else the
  process-default kernel (the embedded model unless configured otherwise).

``aios.unpatch("metagpt")`` restores every patched attribute. LLM objects created while patched for
non-OpenAI API types stay on the kernel, and ``run`` of action classes defined while patched keeps a
wrapper that calls straight through once unpatched.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from aios.adapters.base import PatchTarget
from aios.adapters.metagpt.actions import action_targets, role_targets
from aios.adapters.metagpt.env import prepare_metagpt_env
from aios.adapters.metagpt.llm import provider_targets

__all__ = ["MetaGPTAdapter", "make_adapter", "prepare_metagpt_env"]

#: Imported at patch time so that their actions are patched by dotted path (restored exactly).
ACTION_MODULES = ("metagpt.actions.action", "metagpt.actions.di.execute_nb_code")


@dataclass(frozen=True, slots=True)
class MetaGPTAdapter:
    """Routes MetaGPT's LLM calls and action runs through the AIOS kernel."""

    name: str = "metagpt"
    framework: str = "metagpt"

    def targets(self) -> list[PatchTarget]:
        """Provider primitives, the provider registry, ``Action`` runs and ``Role`` entry points."""
        # Before anything imports metagpt.const: that import reads the config and fixes the root.
        prepare_metagpt_env()
        action_base = importlib.import_module(ACTION_MODULES[0]).Action
        for module in ACTION_MODULES[1:]:
            importlib.import_module(module)
        role_base = importlib.import_module("metagpt.roles.role").Role
        return [*provider_targets(), *action_targets(action_base), *role_targets(role_base)]


def make_adapter() -> MetaGPTAdapter:
    """The adapter instance the registry patches."""
    return MetaGPTAdapter()
