"""Fixtures for the Open Interpreter adapter tests (Open Interpreter is imported only inside fixtures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import aios
from aios import sdk
from aios.adapters.open_interpreter.adapter import prepare_offline_env
from aios.backends.scripted import Answer, ScriptedBackend
from aios.config import KernelConfig
from tests.adapters.open_interpreter.support import terminate

# The test modules import Open Interpreter when collected, before anything is patched (as a user's
# script may): the adapter's offline settings must be in place first, or litellm goes online.
prepare_offline_env()


@pytest.fixture
def oi_patched() -> Iterator[None]:
    """Open Interpreter patched for the test, restored after."""
    with aios.patched("open_interpreter"):
        yield


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedBackend]]:
    """``scripted(*results, **config)``: the process-default kernel answers from a script.

    ``config`` sets ``KernelConfig`` fields (e.g. ``default_timeout``); the kernel is stopped after.
    """
    backends: list[ScriptedBackend] = []

    def start(*script: Answer, **config: Any) -> ScriptedBackend:
        backend = ScriptedBackend(*script)
        sdk.start_default_kernel(
            KernelConfig(backends=[], **config), backends={"scripted": backend}, entry_points=False
        )
        backends.append(backend)
        return backend

    yield start
    sdk.stop_default_kernel()
    for backend in backends:
        backend.check()


@pytest.fixture
def make_interpreter() -> Iterator[Callable[..., Any]]:
    """``make_interpreter(**settings)``: a fresh ``OpenInterpreter`` set up for offline tests.

    Its languages (a Jupyter kernel, a shell) are terminated after the test.
    """
    made: list[Any] = []

    def make(**settings: Any) -> Any:
        from interpreter import OpenInterpreter

        kw: dict[str, Any] = {"offline": True, "auto_run": True, "conversation_history": False}
        interp = OpenInterpreter(**(kw | settings))
        interp.llm.model = "gpt-4o-mini"
        interp.llm.max_tokens = 32
        made.append(interp)
        return interp

    yield make
    for interp in made:
        terminate(interp)
