"""What the ``test_bench_agent`` files of the four framework agents share (it imports no framework).

A configurable one-task benchmark, ``bench_run`` (the whole harness, ``runner.run``, on it with a
scripted backend or the embedded model) and the real-model check every framework's agent must pass.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

from aios.backends.scripted import ScriptedBackend
from aios.benchmarks.core import (
    JSON,
    AgentDefaults,
    AgentOutput,
    Benchmark,
    Episode,
    Score,
    Task,
    success_rate,
)
from aios.benchmarks.execution import CodeRunner, Limits, python_tool
from aios.benchmarks.frameworks import AgentSettings, get_framework
from aios.benchmarks.progress import Progress
from aios.benchmarks.results import RunDir
from aios.benchmarks.runner import RunConfig, run
from aios.benchmarks.runtime import backend_config
from aios.errors import BackendError
from aios.managers.tools import Tool
from aios.types import LLMRequest

SIX_TIMES_SEVEN = "What is 6*7? Use python if you want, then call finish with the number."
#: The ``tool_choice`` that forces ``finish`` (the last step when ``answer_on_last_step``).
FORCE_FINISH = {"type": "function", "function": {"name": "finish"}}
#: What a record counts, which must not depend on the mode.
COUNTED = ("llm_calls", "tool_calls", "prompt_tokens", "completion_tokens")
#: The actions the embedded model may take on the python task (``""``: a turn without a tool call).
MODEL_ACTIONS = {"python", "finish", ""}

T = TypeVar("T", bound=Callable[..., Any])


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first integer.
        b: The second integer.
    """
    return a + b


def add_tools() -> list[Tool]:
    """The episode's tools: ``add``."""
    return [Tool.from_function(add)]


def python_tools(*extra: Tool, timeout_s: float = 10.0) -> Callable[[], list[Tool]]:
    """A factory of the episode's tools: a sandboxed ``python`` (one runner for all) and ``extra``."""
    runner, limits = CodeRunner(concurrency=1), Limits(timeout_s=timeout_s)
    return lambda: [python_tool(runner, limits=limits), *extra]


class OneTask:
    """One task, right if the answer is ``answer``.

    Its episode is ``make()`` when given (fresh state per episode), else ``prompt`` with the tools
    ``tools()`` builds and the episode options ``max_steps``, ``finish`` and ``is_done``.
    """

    name = "one-task"
    metric = "accuracy"
    defaults = AgentDefaults(max_steps=4)

    def __init__(
        self,
        tools: Callable[[], list[Tool]] = add_tools,
        *,
        prompt: str = SIX_TIMES_SEVEN,
        make: Callable[[], Episode] | None = None,
        answer: str = "42",
        max_steps: int = 6,
        finish: Tool | None = None,
        is_done: Callable[[], bool] | None = None,
    ) -> None:
        self.tools, self.prompt, self.make, self.answer = tools, prompt, make, answer
        self.max_steps, self.finish, self.is_done = max_steps, finish, is_done

    def load(self, source: str | None = None) -> list[Task]:
        """The one task."""
        return [Task(id="one", data={"answer": self.answer})]

    async def episode(self, task: Task) -> Episode:
        """``make()``, or the prompt, the tools and the episode options."""
        if self.make is not None:
            return self.make()
        return Episode(
            prompt=self.prompt,
            tools=self.tools(),
            finish=self.finish,
            max_steps=self.max_steps,
            is_done=self.is_done,
        )

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Right if the answer is the task's."""
        return Score(success=(output.answer or "").strip() == task.data["answer"])

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """Accuracy."""
        return {"accuracy": success_rate(records)}


class Ran(NamedTuple):
    """One run's task record and its run.json."""

    record: dict[str, Any]
    meta: dict[str, Any]


async def bench_run(
    tmp_path: Path,
    framework: str,
    *,
    backend: ScriptedBackend | None,
    kernel: bool,
    bench: Benchmark | None = None,
    task_timeout: float = 60.0,
    **settings: Any,
) -> Ran:
    """``runner.run`` of ``framework`` on ``bench`` (default ``OneTask()``) in ``tmp_path/kernel|direct``.

    ``backend`` answers every call (its script must be used up exactly), or the embedded model
    when None; ``settings`` override the agent settings (4 steps of 32 action tokens).
    """
    out = tmp_path / ("kernel" if kernel else "direct")
    cfg = RunConfig(
        benchmark=bench or OneTask(),
        framework=get_framework(framework),
        output=out,
        backend=backend_config(),
        kernel=kernel,
        settings=AgentSettings(**{"max_steps": 4, "action_tokens": 32, **settings}),
        task_timeout=task_timeout,
    )
    if backend is not None:
        scripted = backend  # bound here: mypy does not narrow a parameter inside a lambda
        cfg.make_backend = lambda _cfg: scripted
    meta = await run(cfg, progress=Progress(0, stream=io.StringIO()))
    if backend is not None:
        backend.check()
    (record,) = RunDir(out).records()
    return Ran(record, meta)


def backend_failure(message: str) -> Callable[[LLMRequest], Any]:
    """A scripted answer whose call fails with a ``BackendError`` saying ``message``."""

    def fail(request: LLMRequest) -> Any:
        raise BackendError(message, backend="scripted")

    return fail


def accounting(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``record`` counts (``COUNTED``)."""
    return {k: record[k] for k in COUNTED}


def tool_names(request: LLMRequest) -> list[str]:
    """The names of the tools ``request`` offered."""
    return [t["function"]["name"] for t in request.tools or []]


def sent(backend: ScriptedBackend) -> list[tuple[Any, ...]]:
    """What each request asked of the model (what must not depend on the mode)."""
    return [(r.messages, r.tools, r.tool_choice, r.max_tokens, r.temperature) for r in backend.requests]


def on_the_model(test: T) -> T:
    """Mark ``test`` as one that runs the real embedded model (with room for two slow runs)."""
    timed: T = pytest.mark.timeout(300)(test)
    marked: T = pytest.mark.model(timed)
    return marked


async def model_runs(
    tmp_path: Path, framework: str, *, together: bool = False, task_timeout: float = 240.0
) -> tuple[Ran, Ran]:
    """(with, without the kernel): the embedded model on 6*7 with ``python``, 2 steps of 64 tokens.

    Checks what every framework's agent must show: a finished task, tokens generated, and with
    the kernel every LLM call and tool run a syscall. ``together`` runs both modes at once (each
    has its own model instance: half the wall time on a busy machine).
    """
    bench = OneTask(python_tools(timeout_s=5.0), max_steps=2)

    async def one(kernel: bool) -> Ran:
        return await bench_run(
            tmp_path,
            framework,
            backend=None,
            kernel=kernel,
            bench=bench,
            task_timeout=task_timeout,
            max_steps=2,
            action_tokens=64,
        )

    if together:
        with_kernel, without = await asyncio.gather(one(True), one(False))
    else:
        with_kernel, without = await one(True), await one(False)
    for record in (with_kernel.record, without.record):
        print(f"answer={record['answer']!r} actions={[s['action'] for s in record['steps']]}")
        assert record["status"] == "done" and record["error"] is None, record
        assert record["llm_calls"] >= 1 and record["completion_tokens"] > 0
    syscalls = with_kernel.meta["kernel_stats"]["latency"]["count"]
    assert syscalls == with_kernel.record["llm_calls"] + with_kernel.record["tool_calls"]
    assert "kernel_stats" not in without.meta and with_kernel.meta["status"] == "finished"
    return with_kernel, without
