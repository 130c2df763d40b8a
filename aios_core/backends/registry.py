"""The built-in backend kinds, registered through the same hook as third-party backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aios.hookspecs import hookimpl


def _llamacpp(**options: Any) -> Any:
    from aios.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(**options)


def _openai(**options: Any) -> Any:
    from aios.backends.openai_backend import OpenAIBackend

    return OpenAIBackend(**options)


def _sim(**options: Any) -> Any:
    from aios.backends.sim import SimBackend

    return SimBackend(**options)


def _chaos(**options: Any) -> Any:
    from aios.chaos.backend import ChaosBackend

    return ChaosBackend.from_options(**options)


@hookimpl
def aios_backends() -> dict[str, Callable[..., Any]]:
    """``llamacpp`` (embedded, the default), ``openai`` (any compatible server), ``sim``, ``chaos``."""
    return {"llamacpp": _llamacpp, "openai": _openai, "sim": _sim, "chaos": _chaos}
