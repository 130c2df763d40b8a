"""Extension points (pluggy): hook names carry the ``aios_`` prefix and take keyword arguments only.

Built-ins register through these same hooks; third parties arrive through the entry-point group
``aios`` (``[project.entry-points.aios]`` in their pyproject). Each hook returns a mapping or a
list that the kernel merges; a later plugin cannot silently replace a name: duplicates are errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "aios"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def aios_backends() -> dict[str, Callable[..., Any]]:  # type: ignore[empty-body]
    """Backend kinds: kind name → factory taking ``name=`` and the backend's options."""


@hookspec
def aios_policies() -> dict[str, Callable[..., Any]]:  # type: ignore[empty-body]
    """Scheduling policies: name → factory taking ``slice=``."""


@hookspec
def aios_tools() -> list[Any]:  # type: ignore[empty-body]
    """Tools: ``Tool`` records or plain typed functions."""


@hookspec
def aios_adapters() -> dict[str, Callable[[], Any]]:  # type: ignore[empty-body]
    """Framework adapters: name (as given to ``aios.patch``) → factory of the adapter."""


@hookspec
def aios_benchmarks() -> dict[str, Callable[[], Any]]:  # type: ignore[empty-body]
    """Benchmarks: name → factory of the benchmark."""
