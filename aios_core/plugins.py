"""The plugin manager: built-ins and entry-point plugins, merged with duplicate detection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from aios import hookspecs
from aios.errors import ConfigError

#: Built-in plugins, under the same names as their entry points in pyproject.toml so an installed
#: copy is not loaded twice. Adapters register lazily (aios.adapters.registry), not here: the
#: kernel must not import the layer above it.
BUILTINS = {"builtin_backends": "aios.backends.registry", "builtin_tools": "aios.managers.builtin_tools"}


def make_plugin_manager(*, entry_points: bool = True, extra: tuple[object, ...] = ()) -> pluggy.PluginManager:
    """A plugin manager with the hook specs, the built-in plugins, entry-point plugins and ``extra``."""
    import importlib

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, modname in BUILTINS.items():
        pm.register(importlib.import_module(modname), name=name)
    for plugin in extra:
        pm.register(plugin)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    return pm


def merged(results: list[dict[str, Callable[..., Any]]], what: str) -> dict[str, Callable[..., Any]]:
    """Merge the dicts returned by one hook; a name given twice is a configuration error."""
    out: dict[str, Callable[..., Any]] = {}
    for part in results:
        for name, factory in part.items():
            if name in out and out[name] is not factory:
                raise ConfigError(f"two plugins provide the {what} {name!r}", field=what)
            out[name] = factory
    return out
