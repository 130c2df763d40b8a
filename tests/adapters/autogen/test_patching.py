"""Patching both AutoGen adapters: exact restore, reference counting, the context manager."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

pytest.importorskip("autogen", reason="AutoGen classic (ag2[openai]<1) is not installed")
pytest.importorskip("autogen_agentchat", reason="autogen-agentchat is not installed")

from aios.adapters.base import resolve
from aios.adapters.registry import active, patch, patched, unpatch

NAMES = ["autogen", "autogen_agentchat"]
MODULES = {"autogen": "aios.adapters.autogen.adapter", "autogen_agentchat": "aios.adapters.autogen.agentchat"}


def owned(name: str) -> dict[str, Any]:
    """Each patch target's attribute as its owner holds it (descriptors included), by path."""
    out: dict[str, Any] = {}
    for target in importlib.import_module(MODULES[name]).make_adapter().targets():
        owner, attr = resolve(target.path)
        out[target.path] = vars(owner).get(attr)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_patch_replaces_every_target_and_unpatch_restores_the_very_same_objects(name: str):
    before = owned(name)
    assert all(v is not None for v in before.values())

    undo = patch(name)
    during = owned(name)
    undo()

    assert all(during[p] is not before[p] for p in before)
    after = owned(name)
    assert all(after[p] is before[p] for p in before)
    assert name not in active()


@pytest.mark.parametrize("name", NAMES)
def test_patching_twice_and_unpatching_once_keeps_the_patch(name: str):
    before = owned(name)
    patch(name)
    patch(name)
    patched_once = owned(name)

    unpatch(name)
    still = owned(name)
    unpatch(name)

    assert still == patched_once and all(still[p] is not before[p] for p in before)
    assert all(owned(name)[p] is before[p] for p in before)


@pytest.mark.parametrize("name", NAMES)
def test_the_context_manager_patches_inside_the_block_only(name: str):
    before = owned(name)

    with patched(name):
        inside = owned(name)
        assert name in active()

    assert all(inside[p] is not before[p] for p in before)
    assert all(owned(name)[p] is before[p] for p in before)
    assert name not in active()


def test_the_two_adapters_patch_independently():
    classic, agentchat = owned("autogen"), owned("autogen_agentchat")

    with patched("autogen"):
        assert owned("autogen_agentchat") == agentchat
        with patched("autogen_agentchat"):
            assert all(owned("autogen")[p] is not classic[p] for p in classic)

    assert owned("autogen") == classic and owned("autogen_agentchat") == agentchat
