"""The public surface: exactly what ``__all__`` lists, and a cheap ``import aios``."""

from __future__ import annotations

import json
import subprocess
import sys

import aios

FRAMEWORKS = [
    "openai",
    "httpx",
    "llama_cpp",
    "langchain_core",
    "autogen",
    "metagpt",
    "interpreter",
    "litellm",
]


def test_all_is_sorted_and_every_name_resolves():
    assert aios.__all__ == sorted(aios.__all__)
    for name in aios.__all__:
        assert getattr(aios, name) is not None


def test_import_is_fast_and_imports_no_framework_or_runtime():
    code = (
        "import json, sys, time; t = time.perf_counter(); import aios; dt = time.perf_counter() - t;"
        f"print(json.dumps([dt, [m for m in {FRAMEWORKS!r} if m in sys.modules]]))"
    )
    best = 9.9
    for _ in range(3):  # best of three: the machine may be busy with other tests
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        dt, loaded = json.loads(out.stdout)
        assert loaded == []
        best = min(best, dt)
    assert best < 0.3
