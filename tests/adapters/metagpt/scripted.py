"""A kernel on a scripted backend for the MetaGPT adapter tests (no framework import here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aios.backends.scripted import Answer, ScriptedBackend
from aios.kernel import Kernel


@asynccontextmanager
async def scripted_kernel(*answers: Answer) -> AsyncIterator[tuple[Kernel, ScriptedBackend]]:
    """A kernel in this loop whose only core is a ``ScriptedBackend``; checks it on exit."""
    backend = ScriptedBackend(*answers)
    async with Kernel(backends={"scripted": backend}, entry_points=False) as kernel:
        yield kernel, backend
    backend.check()
