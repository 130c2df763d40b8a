"""Fixtures for the AutoGen adapter tests (no framework import here: the main run collects this)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from aios import sdk
from aios.backends.scripted import Answer, ScriptedBackend
from aios.config import KernelConfig


@pytest.fixture
def default_kernel() -> Iterator[Callable[[list[Answer]], ScriptedBackend]]:
    """``default_kernel(script)``: the process-default kernel, answering from ``script``."""
    made: list[ScriptedBackend] = []

    def start(script: list[Answer]) -> ScriptedBackend:
        backend = ScriptedBackend(*script)
        sdk.start_default_kernel(
            KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False
        )
        made.append(backend)
        return backend

    yield start
    sdk.stop_default_kernel()
    for backend in made:
        backend.check()
