"""Tiny runs on the real embedded model (one task, one step, few tokens) for the model tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from aios.benchmarks.core import Benchmark
from aios.benchmarks.frameworks import AgentSettings, get_framework
from aios.benchmarks.progress import Progress
from aios.benchmarks.results import RunDir
from aios.benchmarks.runner import RunConfig, run
from aios.benchmarks.runtime import backend_config

TINY = AgentSettings(max_steps=1, thought_tokens=6, action_tokens=32, max_trials=2)


async def tiny_run(
    bench: Benchmark, framework: str, *, kernel: bool, out: Path, **kw: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``framework`` on the first task of ``bench``; return run.json and the records."""
    kw.setdefault("limit", 1)
    cfg = RunConfig(
        benchmark=bench,
        framework=get_framework(framework),
        output=out,
        backend=backend_config(),
        kernel=kernel,
        settings=TINY,
        task_timeout=300,
        **kw,
    )
    meta = await run(cfg, progress=Progress(0, stream=io.StringIO()))
    return meta, RunDir(out).records()


def check_record(record: dict[str, Any], tools: set[str], framework: str) -> None:
    """What every real run must show: the agent ran, acted with declared tools, and was scored."""
    assert record["status"] == "done" and record["error"] is None
    assert isinstance(record["success"], bool)
    assert record["llm_calls"] >= 2 and record["completion_tokens"] > 0
    assert record["steps"] and all(s["action"] in tools | {"finish", ""} for s in record["steps"])
    if framework == "reflexion":
        # A trial that failed its self-check left a reflection for the next one.
        assert record["trials"] in (1, 2) and len(record["reflections"]) == record["trials"] - 1
