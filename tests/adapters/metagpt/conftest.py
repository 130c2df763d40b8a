"""Fixtures for the MetaGPT adapter tests; MetaGPT is imported only inside fixtures."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest


@pytest.fixture
def metagpt_patched() -> Iterator[None]:
    """MetaGPT patched for the duration of the test."""
    from aios.adapters.registry import patched

    with patched("metagpt"):
        yield


@pytest.fixture
def stream_log() -> Iterator[list[str]]:
    """The pieces MetaGPT's ``log_llm_stream`` receives during the test."""
    logs = importlib.import_module("metagpt.logs")
    pieces: list[str] = []
    original = logs._llm_stream_log
    logs.set_llm_stream_logfunc(pieces.append)
    yield pieces
    logs.set_llm_stream_logfunc(original)


@pytest.fixture
def no_default_kernel() -> Iterator[None]:
    """Stops any process-default kernel the test started."""
    from aios import sdk

    yield
    sdk.stop_default_kernel()
