"""Patching Open Interpreter: exact restore, reference counts, the context manager, offline env."""

from __future__ import annotations

import pytest

from tests.adapters.open_interpreter.support import REASON, import_warnings_ignored

with import_warnings_ignored():
    pytest.importorskip("interpreter", reason=REASON)

from collections.abc import Callable
from typing import Any

import interpreter.core.core as oi_core
from interpreter.core.computer.terminal.terminal import Terminal
from interpreter.core.llm import llm as oi_llm

import aios
from aios.adapters.open_interpreter.adapter import no_telemetry, prepare_offline_env
from aios.adapters.open_interpreter.completions import KernelCompletions

ORIGINAL_RUN = vars(Terminal)["run"]
ORIGINAL_TELEMETRY = oi_core.send_telemetry


def assert_original() -> None:
    assert "__getattribute__" not in vars(oi_llm.Llm)
    assert oi_llm.Llm.__getattribute__ is object.__getattribute__
    assert vars(Terminal)["run"] is ORIGINAL_RUN
    assert oi_core.send_telemetry is ORIGINAL_TELEMETRY


def assert_patched() -> None:
    assert "__getattribute__" in vars(oi_llm.Llm)
    assert vars(Terminal)["run"] is not ORIGINAL_RUN
    assert vars(Terminal)["run"].__wrapped__ is ORIGINAL_RUN
    assert oi_core.send_telemetry is no_telemetry


def test_unpatch_restores_every_original_exactly(make_interpreter: Callable[..., Any]) -> None:
    interp = make_interpreter()
    assert_original()
    undo = aios.patch("open_interpreter")
    try:
        assert_patched()
        assert isinstance(interp.llm.completions, KernelCompletions)
    finally:
        undo()
    assert_original()
    assert interp.llm.completions is oi_llm.fixed_litellm_completions


def test_patch_twice_and_unpatch_once_keeps_it_patched() -> None:
    aios.patch("open_interpreter")
    aios.patch("open_interpreter")
    try:
        aios.unpatch("open_interpreter")
        assert_patched()
    finally:
        aios.unpatch("open_interpreter")
    assert_original()


def test_patched_context_manager_patches_inside_only() -> None:
    with aios.patched("open_interpreter"):
        assert_patched()
        assert "open_interpreter" in aios.adapters.registry.active()
    assert_original()
    assert "open_interpreter" not in aios.adapters.registry.active()


def test_instances_made_before_patching_are_covered_including_the_singleton(oi_patched: None) -> None:
    from interpreter import interpreter

    assert isinstance(interpreter.llm.completions, KernelCompletions)


def test_completions_set_by_the_user_are_left_alone(
    oi_patched: None, make_interpreter: Callable[..., Any]
) -> None:
    interp = make_interpreter()

    def mine(**params: Any) -> Any:
        return iter(())

    interp.llm.completions = mine
    assert interp.llm.completions is mine


def test_telemetry_sends_nothing_while_patched(oi_patched: None) -> None:
    assert oi_core.send_telemetry("started_chat", properties={"x": 1}) is None
    assert oi_core.send_telemetry is no_telemetry


def test_offline_env_is_set_only_where_unset() -> None:
    env: dict[str, str] = {}
    prepare_offline_env(env)
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["TIKTOKEN_CACHE_DIR"].endswith("litellm/litellm_core_utils/tokenizers")

    mine = {"LITELLM_LOCAL_MODEL_COST_MAP": "False", "TIKTOKEN_CACHE_DIR": "/my/cache"}
    prepare_offline_env(mine)
    assert mine == {"LITELLM_LOCAL_MODEL_COST_MAP": "False", "TIKTOKEN_CACHE_DIR": "/my/cache"}
