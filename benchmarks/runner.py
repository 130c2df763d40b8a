"""Run one benchmark with one framework, with or without the kernel, resumably.

``await run(RunConfig(...))`` loads the tasks, skips those a resumed run already finished, and
runs up to ``concurrency`` agents at once. Each task: the benchmark builds the episode, the
framework's agent acts in it (bounded by ``task_timeout``), the benchmark scores the output, and
the record is appended to ``results.jsonl`` at once. An agent that fails (a model mistake the
framework did not absorb) is a failed task; a backend or harness error is recorded with
``status="error"`` and retried on ``--resume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aios.adapters.react_reflexion import AgentRuntime, KernelRuntime
from aios.backends.base import Backend
from aios.config import BackendConfig, KernelConfig
from aios.errors import AIOSError, ConfigError, InvalidRequestError
from aios.kernel import Kernel

from .core import AgentOutput, Benchmark, Task
from .frameworks import AgentSettings, AgentSpec, Framework
from .progress import Progress
from .results import RunDir
from .runtime import CountingRuntime, DirectLLM, make_backend

#: Errors that say the harness or backend failed rather than the agent: retried on resume.
_HARNESS_ERRORS = (AIOSError, OSError)


@dataclass(slots=True)
class RunConfig:
    """One run: which benchmark, framework, backend and mode, and where results go."""

    benchmark: Benchmark
    framework: Framework
    output: Path
    backend: BackendConfig
    kernel: bool = True
    limit: int | None = None
    tasks: Sequence[str] = ()
    concurrency: int = 1
    scheduler: str = "fair"
    resume: bool = False
    settings: AgentSettings = field(default_factory=AgentSettings)
    #: Seconds one task's agent may run before it counts as failed.
    task_timeout: float = 1800.0
    #: How many independent agents per task (pass@k with n samples); success means any passed.
    samples: int = 1
    data: str | None = None
    #: Extra facts recorded in run.json (the vLLM command, the CLI line).
    notes: dict[str, Any] = field(default_factory=dict)
    #: Builds the backend from ``backend`` in both modes (injectable for tests and plugins).
    make_backend: Callable[[BackendConfig], Backend] = make_backend

    def identity(self) -> dict[str, Any]:
        """What run.json records about this run."""
        return {
            "benchmark": self.benchmark.name,
            "metric": self.benchmark.metric,
            "framework": self.framework.name,
            "kernel": self.kernel,
            "backend": {"name": self.backend.name, "kind": self.backend.kind, **_safe(self.backend.options)},
            "scheduler": self.scheduler if self.kernel else None,
            "concurrency": self.concurrency,
            "samples": self.samples,
            "settings": asdict(self.settings),
            "limit": self.limit,
            "tasks": list(self.tasks),
            "data": self.data,
            **self.notes,
        }


def _safe(options: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if "key" in k.lower() else v) for k, v in options.items() if _jsonable(v)}


def _jsonable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | type(None) | list | dict)


def select(tasks: Sequence[Task], ids: Sequence[str], limit: int | None) -> list[Task]:
    """The tasks named by ``ids`` (all if none), then the first ``limit``; unknown ids are errors."""
    chosen = list(tasks)
    if ids:
        by_id = {t.id: t for t in tasks}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InvalidRequestError(
                f"unknown task id(s) {missing[:5]}; e.g. {[t.id for t in tasks[:3]]}", field="tasks"
            )
        chosen = [by_id[i] for i in ids]
    if limit is not None:
        if limit < 1:
            raise InvalidRequestError("limit must be at least 1", field="limit")
        chosen = chosen[:limit]
    return chosen


def agent_name(framework: str, task_id: str, sample: int) -> str:
    """A kernel-safe agent id for one task's agent."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{framework}-{task_id}")[:180]
    return base if sample == 0 else f"{base}-s{sample}"


@contextlib.asynccontextmanager
async def _runtime(cfg: RunConfig) -> AsyncIterator[tuple[AgentRuntime, Kernel | None]]:
    # The same factory builds the backend in both modes: "with vs without" is the kernel alone.
    backend = cfg.make_backend(cfg.backend)
    if cfg.kernel:
        kcfg = KernelConfig(
            backends=[cfg.backend],
            scheduler=cfg.scheduler,
            data_dir=str(cfg.output / "kernel"),
            audit_file=False,
            default_timeout=cfg.task_timeout,
        )
        async with Kernel(kcfg, backends={cfg.backend.name: backend}, entry_points=False) as kernel:
            yield KernelRuntime(kernel), kernel
    else:
        await backend.start()
        try:
            yield DirectLLM(backend, timeout=cfg.task_timeout), None
        finally:
            await backend.close()


async def _one(
    cfg: RunConfig, task: Task, base: AgentRuntime, kernel: Kernel | None, sample: int
) -> tuple[dict[str, Any], bool]:
    name = agent_name(cfg.framework.name, task.id, sample)
    runtime = CountingRuntime(base)
    started = time.monotonic()
    record: dict[str, Any] = {"task_id": task.id, "group": task.group, "sample": sample}
    output, status, error = AgentOutput(answer=None), "done", None
    try:
        episode = await cfg.benchmark.episode(task)
    except _HARNESS_ERRORS as exc:
        # The task's environment could not be built (data, sandbox): nothing ran; retried on resume.
        record.update(
            status="error", success=False, error=f"{type(exc).__name__}: {exc}", finished_at=time.time()
        )
        return record, False
    try:
        spec = AgentSpec(
            name=name,
            episode=episode,
            runtime=runtime,
            settings=cfg.settings,
            kernel=kernel,
            backend_url=cfg.backend.options.get("base_url"),
            backend_model=cfg.backend.options.get("model"),
        )
        try:
            async with asyncio.timeout(cfg.task_timeout):
                output = await cfg.framework.run(spec)
        except TimeoutError:
            error = f"agent timed out after {cfg.task_timeout} s"
        except _HARNESS_ERRORS as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"
        agent_s = time.monotonic() - started
        score = await cfg.benchmark.score(task, episode, output)
    finally:
        episode.close()
    c = runtime.counts
    record.update(
        status=status,
        success=score.success,
        answer=output.answer,
        metrics=score.metrics,
        detail=score.detail[:2000],
        error=error,
        trials=output.trials,
        reflections=output.reflections,
        steps=output.steps,
        llm_calls=c.llm_calls,
        tool_calls=c.tool_calls,
        prompt_tokens=c.prompt_tokens,
        completion_tokens=c.completion_tokens,
        llm_s=round(c.llm_seconds, 3),
        agent_s=round(agent_s, 3),
        wall_s=round(time.monotonic() - started, 3),
        finished_at=time.time(),
    )
    return record, score.success


async def run(cfg: RunConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark; return the summary written to run.json."""
    if cfg.concurrency < 1:
        raise ConfigError("concurrency must be at least 1", field="concurrency")
    if cfg.samples < 1:
        raise ConfigError("samples must be at least 1", field="samples")
    cfg.framework.preflight()
    tasks = select(cfg.benchmark.load(cfg.data), cfg.tasks, cfg.limit)
    rundir = RunDir(cfg.output)
    meta = cfg.identity()
    finished = rundir.prepare(meta, resume=cfg.resume)
    units = [(t, s) for t in tasks for s in range(cfg.samples)]
    todo = [(t, s) for t, s in units if (t.id, s) not in finished]
    latest = rundir.latest()
    bar = progress or Progress(len(units), label=f"{cfg.benchmark.name}/{cfg.framework.name}")
    bar.total = len(units)
    bar.done = bar.done_before = len(units) - len(todo)
    bar.successes = sum(bool(latest[(t.id, s)].get("success")) for t, s in units if (t.id, s) in finished)
    old = rundir.read_meta()
    meta.update(
        started_at=old.get("started_at", time.time()),
        host=platform.node(),
        n_tasks=len(tasks),
        status="running",
        wall_s=float(old.get("wall_s", 0.0)),
    )
    rundir.write_meta(meta)
    bar.draw()
    wall_start = time.monotonic()
    slots = asyncio.Semaphore(cfg.concurrency)
    try:
        async with _runtime(cfg) as (base, kernel):
            meta["model"] = _model_name(base, kernel)

            async def worker(task: Task, sample: int) -> None:
                async with slots:
                    record, ok = await _one(cfg, task, base, kernel, sample)
                rundir.append(record)
                bar.update(ok)

            await asyncio.gather(*(worker(t, s) for t, s in todo))
            if kernel is not None:
                meta["kernel_stats"] = _kernel_summary(kernel)
        meta["status"] = "finished"
        finalize = getattr(cfg.benchmark, "finalize", None)
        if finalize is not None:
            meta.update(await finalize(cfg.output, _records(rundir, units), str(meta.get("model", ""))))
    finally:
        meta["wall_s"] = round(float(meta["wall_s"]) + time.monotonic() - wall_start, 3)
        meta["finished_at"] = time.time()
        records = _records(rundir, units)
        meta["summary"] = cfg.benchmark.summarize(records)
        meta["n_records"] = len(records)
        rundir.write_meta(meta)
        bar.close()
    return meta


def _records(rundir: RunDir, units: Sequence[tuple[Task, int]]) -> list[dict[str, Any]]:
    wanted = {(t.id, s) for t, s in units}
    return [r for key, r in rundir.latest().items() if key in wanted]


def _model_name(base: AgentRuntime, kernel: Kernel | None) -> str:
    if kernel is not None:
        return ",".join(b.model for b in kernel.backends.values())
    if isinstance(base, DirectLLM):
        return base.backend.model
    return ""


def _kernel_summary(kernel: Kernel) -> dict[str, Any]:
    stats = kernel.stats()
    keep = ("latency", "preemptions", "context")
    summary = {k: v for k, v in stats.items() if k in keep}
    agents = stats.get("agents", {}).values()
    # Syscalls by kind over the run's agents: what the kernel did for this run, in one place.
    kinds = sorted({kind for a in agents for kind in a.get("by_kind", {})})
    summary["by_kind"] = {kind: sum(a.get("by_kind", {}).get(kind, 0) for a in agents) for kind in kinds}
    summary["syscalls"] = sum(summary["by_kind"].values())
    return summary
