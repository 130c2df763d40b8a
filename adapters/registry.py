"""``aios.patch(name)``: find adapters through the plugin hook and patch them process-wide.

Built-in adapters register through the same ``aios_adapters`` hook as third-party ones (entry
point group ``aios``), so a new framework is a plugin, not a change here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aios.adapters.base import Adapter, Patcher, UnknownAdapterError
from aios.hookspecs import hookimpl

BUILTIN = {
    "langchain": "aios.adapters.langchain.adapter",
    "autogen": "aios.adapters.autogen.adapter",
    "autogen_agentchat": "aios.adapters.autogen.agentchat",
    "metagpt": "aios.adapters.metagpt.adapter",
    "open_interpreter": "aios.adapters.open_interpreter.adapter",
}


def _factory(module: str) -> Callable[[], Any]:
    def make() -> Any:
        return importlib.import_module(module).make_adapter()

    return make


@hookimpl
def aios_adapters() -> dict[str, Callable[[], Any]]:
    """The built-in framework adapters (each imports its framework only when patched)."""
    return {name: _factory(module) for name, module in BUILTIN.items()}


class _Registry:
    """The process's adapters and patcher, built on first use (plugin discovery is not free)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factories: dict[str, Callable[[], Any]] | None = None
        self.patcher = Patcher(self.adapter)

    def factories(self) -> dict[str, Callable[[], Any]]:
        with self._lock:
            if self._factories is None:
                from aios.plugins import make_plugin_manager, merged

                pm = make_plugin_manager()
                if pm.get_plugin("builtin_adapters") is None:
                    pm.register(importlib.import_module(__name__), name="builtin_adapters")
                self._factories = merged(pm.hook.aios_adapters(), "adapter")
            return self._factories

    def adapter(self, name: str) -> Adapter:
        factories = self.factories()
        if name not in factories:
            raise UnknownAdapterError(
                f"no adapter named {name!r}; available: {sorted(factories)}", field="adapter"
            )
        adapter: Adapter = factories[name]()
        return adapter


_registry = _Registry()


def available() -> list[str]:
    """Names accepted by ``aios.patch``."""
    return sorted(_registry.factories())


def patch(name: str) -> Callable[[], None]:
    """Route every LLM and tool call of framework ``name`` through the kernel; returns the undo."""
    return _registry.patcher.patch(name)


def unpatch(name: str) -> None:
    """Undo one ``patch(name)``; the last one restores the framework exactly."""
    _registry.patcher.unpatch(name)


@contextmanager
def patched(name: str) -> Iterator[None]:
    """``with aios.patched("autogen"):`` — patched inside the block only."""
    with _registry.patcher.patched(name):
        yield


def active() -> list[str]:
    """The adapters patched right now."""
    return _registry.patcher.active()
