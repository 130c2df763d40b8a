"""The benchmark registry: built-ins and third-party benchmarks through the ``aios_benchmarks`` hook.

Built-ins register through the same hook as plugins (entry-point group ``aios``); a benchmark's
factory takes keyword options (``data=``, ``repos=``, ``samples=``...) and ignores none silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from aios.errors import ConfigError
from aios.hookspecs import hookimpl

from .core import Benchmark

BUILTIN = {
    "humaneval": "aios.benchmarks.humaneval.benchmark:HumanEval",
    "mint": "aios.benchmarks.mint.benchmark:Mint",
    "gaia": "aios.benchmarks.gaia.benchmark:Gaia",
    "swebench": "aios.benchmarks.swebench.benchmark:SweBench",
}


class UnknownBenchmarkError(ConfigError):
    """No benchmark of that name is registered."""


def _factory(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")

    def make(**options: Any) -> Any:
        return getattr(importlib.import_module(module), attr)(**options)

    return make


@hookimpl
def aios_benchmarks() -> dict[str, Callable[..., Any]]:
    """The built-in benchmarks (each imports its module only when made)."""
    return {name: _factory(target) for name, target in BUILTIN.items()}


def factories(*, entry_points: bool = True) -> dict[str, Callable[..., Any]]:
    """Every benchmark factory: built-ins plus those of installed plugins."""
    from aios.plugins import make_plugin_manager, merged

    pm = make_plugin_manager(entry_points=entry_points)
    if pm.get_plugin("builtin_benchmarks") is None:
        pm.register(importlib.import_module(__name__), name="builtin_benchmarks")
    return merged(pm.hook.aios_benchmarks(), "benchmark")


def get_benchmark(name: str, **options: Any) -> Benchmark:
    """Make benchmark ``name`` with ``options`` (``UnknownBenchmarkError`` naming the known ones)."""
    found = factories()
    if name not in found:
        raise UnknownBenchmarkError(
            f"unknown benchmark {name!r}; known: {', '.join(sorted(found))}", field="benchmark"
        )
    bench: Benchmark = found[name](**options)
    return bench
