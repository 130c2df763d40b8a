"""patch → unpatch restores MetaGPT exactly; patching is reference-counted; ``patched`` scopes it."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

from aios.adapters.base import resolve
from aios.adapters.metagpt.actions import HOOK, is_adapter_function
from aios.adapters.metagpt.adapter import make_adapter
from aios.adapters.registry import active, patch, patched, unpatch
from tests.adapters.metagpt.support import Action, Role

MISSING = object()

#: Attributes that must be replaced while patched, whatever else the adapter targets.
EXPECTED = {
    "metagpt.provider.openai_api.OpenAILLM._achat_completion",
    "metagpt.provider.openai_api.OpenAILLM._achat_completion_stream",
    "metagpt.provider.openai_api.OpenAILLM._achat_completion_function",
    "metagpt.provider.llm_provider_registry.LLMProviderRegistry.get_provider",
    f"metagpt.actions.action.Action.{HOOK}",
    "metagpt.actions.action.Action.run",
    "metagpt.actions.di.execute_nb_code.ExecuteNbCode.run",
    "metagpt.actions.write_code.WriteCode.run",
    "metagpt.roles.role.Role.run",
    "metagpt.roles.role.Role.think",
    "metagpt.roles.role.Role.act",
}


def snapshot(paths: list[str]) -> dict[str, Any]:
    """Each attribute as its owner holds it (``MISSING`` when inherited)."""
    out = {}
    for path in paths:
        owner, attr = resolve(path)
        out[path] = vars(owner).get(attr, MISSING)
    return out


@pytest.fixture
def paths() -> list[str]:
    """The adapter's target paths (computed while unpatched)."""
    assert "metagpt" not in active()
    return [t.path for t in make_adapter().targets()]


def test_the_adapter_targets_the_provider_primitives_actions_and_roles(paths: list[str]) -> None:
    assert set(paths) >= EXPECTED
    assert len(paths) == len(set(paths))


def test_unpatch_restores_every_patched_attribute_exactly(paths: list[str]) -> None:
    before = snapshot(paths)
    undo = patch("metagpt")
    during = snapshot(paths)
    undo()
    after = snapshot(paths)
    assert all(during[p] is not before[p] for p in paths)
    assert all(is_adapter_function(getattr(during[p], "__func__", during[p])) for p in paths if HOOK in p)
    assert all(after[p] is before[p] for p in paths)
    assert HOOK not in vars(Action)
    assert "metagpt" not in active()


def test_patch_twice_and_unpatch_once_keeps_it_patched(paths: list[str]) -> None:
    before = snapshot(paths)
    patch("metagpt")
    patch("metagpt")
    once = snapshot(paths)
    unpatch("metagpt")
    assert snapshot(paths) == once
    assert is_adapter_function(vars(Role)["run"])
    unpatch("metagpt")
    assert snapshot(paths) == before
    assert not is_adapter_function(vars(Role)["run"])


def test_patched_context_manager_patches_inside_the_block_only(paths: list[str]) -> None:
    before = snapshot(paths)
    with patched("metagpt"):
        assert "metagpt" in active()
        assert is_adapter_function(vars(Action)["run"])
    assert snapshot(paths) == before
    assert "metagpt" not in active()
