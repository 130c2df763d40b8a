"""The patching base: dotted targets, exact restore, reference counts, and the adapter registry."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

import aios
from aios.adapters.base import Adapter, FrameworkNotInstalledError, Patcher, PatchTarget, UnknownAdapterError
from aios.errors import ConfigError


@pytest.fixture
def framework() -> Iterator[types.ModuleType]:
    """A fake framework module with the kinds of attributes real frameworks have."""
    mod = types.ModuleType("fakefw")

    class Base:
        def chat(self, x: int) -> str:
            return f"base:{x}"

        @staticmethod
        def helper() -> str:
            return "static"

    class Child(Base):
        pass

    mod.Base = Base  # type: ignore[attr-defined]
    mod.Child = Child  # type: ignore[attr-defined]
    sys.modules["fakefw"] = mod
    yield mod
    del sys.modules["fakefw"]


class FakeAdapter:
    name = "fake"
    framework = "fakefw"

    def targets(self) -> list[PatchTarget]:
        def wrap_chat(original: Any) -> Any:
            def chat(self: Any, x: int) -> str:
                return "kernel:" + original(self, x)

            return chat

        return [
            PatchTarget("fakefw.Base.chat", wrap_chat),
            PatchTarget(
                "fakefw.Base.helper", lambda orig: staticmethod(lambda: "patched-" + orig.__func__())
            ),
            PatchTarget("fakefw.Child.chat", lambda orig: orig),  # inherited: must be deleted on restore
        ]


def make_patcher(adapter: Adapter) -> Patcher:
    return Patcher(lambda name: adapter)


def test_patch_replaces_and_unpatch_restores_exactly(framework: Any):
    base_dict = dict(vars(framework.Base))
    patcher = make_patcher(FakeAdapter())
    undo = patcher.patch("fake")
    assert framework.Child().chat(2) == "kernel:base:2"
    assert framework.Base.helper() == "patched-static"
    assert "chat" in vars(framework.Child)
    undo()
    assert dict(vars(framework.Base)) == base_dict  # the very same function and staticmethod objects
    assert "chat" not in vars(framework.Child)
    assert framework.Child().chat(2) == "base:2"


def test_patch_is_reference_counted_and_idempotent(framework: Any):
    original = vars(framework.Base)["chat"]
    patcher = make_patcher(FakeAdapter())
    patcher.patch("fake")
    patched_fn = vars(framework.Base)["chat"]
    with patcher.patched("fake"):
        assert vars(framework.Base)["chat"] is patched_fn  # not wrapped twice
        assert patcher.refs("fake") == 2
    assert framework.Base().chat(1) == "kernel:base:1"
    patcher.unpatch("fake")
    patcher.unpatch("fake")  # extra unpatch is harmless
    assert vars(framework.Base)["chat"] is original and patcher.active() == []


def test_a_failing_target_leaves_nothing_patched(framework: Any):
    class Broken(FakeAdapter):
        def targets(self) -> list[PatchTarget]:
            return [*super().targets(), PatchTarget("fakefw.Base.missing", lambda o: o)]

    original = vars(framework.Base)["chat"]
    patcher = make_patcher(Broken())
    with pytest.raises(ConfigError, match=r"fakefw\.Base\.missing") as info:
        patcher.patch("fake")
    assert info.value.field == "targets"
    assert vars(framework.Base)["chat"] is original
    assert patcher.active() == [] and patcher.refs("fake") == 0


def test_an_absent_framework_is_a_clear_error():
    class Absent(FakeAdapter):
        framework = "surely_not_installed_fw"

    with pytest.raises(FrameworkNotInstalledError, match="surely_not_installed_fw"):
        make_patcher(Absent()).patch("fake")


def test_unknown_adapter_lists_the_available_ones():
    with pytest.raises(UnknownAdapterError) as info:
        aios.patch("smalltalk")
    for name in ("langchain", "autogen", "metagpt", "open_interpreter"):
        assert name in str(info.value)
