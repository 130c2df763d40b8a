"""Bad input to the patching base: unknown adapters, broken patch targets, failing wrappers.

``aios.patch(name)`` with any name that no adapter registered is an ``UnknownAdapterError``, and a
patch that fails half way leaves the framework exactly as it was. A patch target that does not
resolve (a framework version that renamed something) is a ``ConfigError(field="targets")`` naming
the path.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aios
from aios.adapters import registry
from aios.adapters.base import Patcher, PatchTarget, UnknownAdapterError
from aios.errors import AIOSError, ConfigError
from tests.reliability.strategies import nasty_text

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fakefw() -> Iterator[types.ModuleType]:
    """A fake framework module with a class whose methods adapters patch."""
    mod = types.ModuleType("fakefw_rel")

    class Client:
        def chat(self, x: int) -> str:
            return f"chat:{x}"

        def stream(self, x: int) -> str:
            return f"stream:{x}"

    mod.Client = Client  # type: ignore[attr-defined]
    sys.modules["fakefw_rel"] = mod
    yield mod
    del sys.modules["fakefw_rel"]


class Adapter:
    """An adapter whose targets are whatever the test says."""

    name = "fake"
    framework = "fakefw_rel"

    def __init__(self, targets: list[PatchTarget]):
        self._targets = targets

    def targets(self) -> list[PatchTarget]:
        return self._targets


def wrapper(original: Any) -> Any:
    def patched(self: Any, x: int) -> str:
        return "kernel:" + original(self, x)

    return patched


@settings(max_examples=200, deadline=None)
@given(name=nasty_text)
def test_patching_an_unregistered_adapter_name_is_an_unknown_adapter_error(name: str) -> None:
    if name in registry.available():
        return
    with pytest.raises(UnknownAdapterError) as info:
        aios.patch(name)
    assert info.value.field == "adapter"
    assert registry.active() == []


bad_paths = st.one_of(
    st.sampled_from(["fakefw_rel.Client.nope", "fakefw_rel.Nope.chat", "nomodule_rel.x.y", "fakefw_rel", ""]),
    st.lists(st.text(alphabet="abcxyz_.", min_size=0, max_size=6), min_size=1, max_size=4).map(".".join),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=bad_paths, position=st.integers(0, 2))
def test_a_patch_that_fails_half_way_restores_everything_it_had_installed(
    fakefw: types.ModuleType, bad: str, position: int
) -> None:
    good = [PatchTarget("fakefw_rel.Client.chat", wrapper), PatchTarget("fakefw_rel.Client.stream", wrapper)]
    targets = [*good[:position], PatchTarget(bad, wrapper), *good[position:]]
    original = dict(vars(fakefw.Client))
    patcher = Patcher(lambda name: Adapter(targets))
    try:
        patcher.patch("fake")
    except Exception:
        assert dict(vars(fakefw.Client)) == original
        assert patcher.active() == []
        assert fakefw.Client().chat(1) == "chat:1"
    else:  # the random path happened to resolve: then it is patched, and unpatching restores it
        patcher.unpatch("fake")
        assert dict(vars(fakefw.Client)) == original


def test_a_wrapper_that_raises_leaves_the_framework_untouched(fakefw: types.ModuleType) -> None:
    def broken(original: Any) -> Any:
        raise ConfigError("this framework version is not supported", field="adapter")

    original = dict(vars(fakefw.Client))
    patcher = Patcher(
        lambda name: Adapter(
            [PatchTarget("fakefw_rel.Client.chat", wrapper), PatchTarget("fakefw_rel.Client.stream", broken)]
        )
    )
    with pytest.raises(ConfigError):
        patcher.patch("fake")
    assert dict(vars(fakefw.Client)) == original


@pytest.mark.parametrize(
    "path",
    ["fakefw_rel.Client.nope", "fakefw_rel.Nope.chat", "nomodule_rel.x.y", "fakefw_rel", "fakefw_rel..chat"],
)
def test_a_patch_target_that_does_not_resolve_is_a_config_error(fakefw: types.ModuleType, path: str) -> None:
    patcher = Patcher(lambda name: Adapter([PatchTarget(path, wrapper)]))
    with pytest.raises(AIOSError):
        patcher.patch("fake")


def test_a_non_string_adapter_name_is_an_unknown_adapter_error() -> None:
    with pytest.raises(UnknownAdapterError):
        aios.patch(["autogen"])  # type: ignore[arg-type]
