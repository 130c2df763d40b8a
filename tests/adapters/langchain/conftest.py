"""Fixtures for the LangChain adapter tests (LangChain itself is imported only by the test modules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import aios
from aios import sdk
from aios.backends.scripted import Answer, ScriptedBackend
from aios.config import KernelConfig
from aios.kernel import Kernel


@pytest.fixture
def lc_patched() -> Iterator[None]:
    """LangChain patched for the test, restored after."""
    with aios.patched("langchain"):
        yield


@pytest.fixture
def default_scripted() -> Iterator[Callable[..., ScriptedBackend]]:
    """``default_scripted(*results)``: the process-default kernel answers from a script."""
    backends: list[ScriptedBackend] = []

    def start(*script: Answer) -> ScriptedBackend:
        backend = ScriptedBackend(*script)
        sdk.start_default_kernel(
            KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False
        )
        backends.append(backend)
        return backend

    yield start
    sdk.stop_default_kernel()
    for backend in backends:
        backend.check()


@pytest.fixture
def local_scripted() -> Iterator[Callable[..., tuple[Kernel, ScriptedBackend]]]:
    """``local_scripted(*results)``: a kernel to enter with ``async with`` in the test's loop."""
    backends: list[ScriptedBackend] = []

    def make(*script: Answer) -> tuple[Kernel, ScriptedBackend]:
        backend = ScriptedBackend(*script)
        backends.append(backend)
        kernel = Kernel(KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False)
        return kernel, backend

    yield make
    for backend in backends:
        backend.check()
