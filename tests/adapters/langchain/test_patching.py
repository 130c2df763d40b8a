"""patch / unpatch: originals restored exactly, reference counting, the context manager."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip(
    "langchain_core", reason="the langchain adapter tests need langchain-core (envs/langchain.lock)"
)

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.tools import BaseTool, StructuredTool, Tool

import aios
from aios.adapters import registry
from aios.adapters.langchain.adapter import make_adapter

PATCHED = [
    (BaseChatModel, "_generate_with_cache"),
    (BaseChatModel, "_agenerate_with_cache"),
    (BaseChatModel, "stream"),
    (BaseChatModel, "astream"),
    (BaseTool, "run"),
    (BaseTool, "arun"),
    (StructuredTool, "ainvoke"),
    (Tool, "ainvoke"),
]


def own(cls: type, attr: str) -> object:
    return vars(cls)[attr]


@pytest.fixture(autouse=True)
def nothing_patched_around_each_test() -> Iterator[None]:
    assert "langchain" not in registry.active()
    yield
    assert "langchain" not in registry.active()


def test_the_adapter_declares_exactly_the_documented_targets():
    paths = [t.path.rsplit(".", 2)[-2:] for t in make_adapter().targets()]
    assert paths == [[cls.__name__, attr] for cls, attr in PATCHED]


def test_unpatch_restores_every_original_exactly():
    before = {(cls, attr): own(cls, attr) for cls, attr in PATCHED}
    undo = aios.patch("langchain")
    try:
        assert all(own(cls, attr) is not before[cls, attr] for cls, attr in PATCHED)
        assert all(own(cls, attr).__wrapped__ is before[cls, attr] for cls, attr in PATCHED)
    finally:
        undo()
    assert all(own(cls, attr) is before[cls, attr] for cls, attr in PATCHED)


def test_patching_twice_needs_two_unpatches():
    before = {(cls, attr): own(cls, attr) for cls, attr in PATCHED}
    aios.patch("langchain")
    aios.patch("langchain")
    aios.unpatch("langchain")
    assert all(own(cls, attr) is not before[cls, attr] for cls, attr in PATCHED)
    aios.unpatch("langchain")
    assert all(own(cls, attr) is before[cls, attr] for cls, attr in PATCHED)


def test_patched_block_patches_inside_and_restores_after_an_error():
    original = own(BaseChatModel, "_generate_with_cache")
    with pytest.raises(RuntimeError, match="boom"), aios.patched("langchain"):
        assert own(BaseChatModel, "_generate_with_cache") is not original
        raise RuntimeError("boom")
    assert own(BaseChatModel, "_generate_with_cache") is original
