"""The run loop: with and without the kernel, per-task JSONL, resume, errors, samples, progress."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aios.backends.base import SliceControl
from aios.benchmarks.core import AgentOutput
from aios.benchmarks.frameworks import AgentSettings, AgentSpec, Framework, get_framework
from aios.benchmarks.progress import Progress
from aios.benchmarks.results import RunDir, RunDirError
from aios.benchmarks.runner import RunConfig, agent_name, run, select
from aios.benchmarks.runtime import DirectLLM, backend_config
from aios.errors import InvalidRequestError
from aios.types import LLMRequest
from tests.benchmarks.fakes import EchoBench, RuleBackend, say_answer


def config(tmp_path: Path, bench: EchoBench, backend: RuleBackend, **kw: Any) -> RunConfig:
    kw.setdefault("framework", get_framework("react"))
    return RunConfig(
        benchmark=bench,
        output=tmp_path / "run",
        backend=backend_config(),
        make_backend=lambda _cfg: backend,
        settings=AgentSettings(max_steps=2, thought_tokens=8, action_tokens=16),
        **kw,
    )


def quiet() -> Progress:
    return Progress(0, stream=io.StringIO())


@pytest.mark.parametrize("kernel", [True, False])
async def test_every_task_is_scored_and_recorded_with_its_call_counts(tmp_path: Path, kernel: bool):
    backend = RuleBackend(say_answer)
    meta = await run(config(tmp_path, EchoBench(), backend, kernel=kernel), progress=quiet())
    records = RunDir(tmp_path / "run").records()
    assert [r["task_id"] for r in records] == ["q0", "q1", "q2", "q3"]
    assert [r["success"] for r in records] == [True, False, True, True]
    assert all(r["llm_calls"] == 2 and r["prompt_tokens"] == 20 for r in records)
    assert records[0]["answer"] == "w0" and records[0]["steps"][0]["action"] == "finish"
    assert meta["summary"] == {"accuracy": 0.75} and meta["status"] == "finished"
    assert meta["kernel"] is kernel and ("kernel_stats" in meta) is kernel
    assert backend.started == 1 and backend.closed == 1


async def test_with_and_without_kernel_send_the_backend_the_same_requests(tmp_path: Path):
    seen = []
    for kernel in (True, False):
        backend = RuleBackend(say_answer)
        await run(config(tmp_path / str(kernel), EchoBench(2), backend, kernel=kernel), progress=quiet())
        seen.append([(r.messages, r.tools, r.tool_choice, r.max_tokens) for r in backend.requests])
    assert seen[0] == seen[1] and len(seen[0]) == 4


async def test_records_are_appended_as_each_task_finishes(tmp_path: Path):
    lines_seen: list[int] = []

    class Spy(Progress):
        def update(self, success: bool) -> None:
            lines_seen.append(len(RunDir(tmp_path / "run").records()))
            super().update(success)

    await run(config(tmp_path, EchoBench(3), RuleBackend(say_answer)), progress=Spy(0, stream=io.StringIO()))
    assert lines_seen == [1, 2, 3]


async def test_an_interrupted_run_resumes_without_redoing_finished_tasks(tmp_path: Path):
    bench = EchoBench(4)
    stop = asyncio.Event()

    class StopAfterTwo(Progress):
        def update(self, success: bool) -> None:
            super().update(success)
            if self.done == 2:
                stop.set()

    task = asyncio.create_task(
        run(config(tmp_path, bench, RuleBackend(say_answer)), progress=StopAfterTwo(0))
    )
    await stop.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = RunDir(tmp_path / "run")
    assert [r["task_id"] for r in first.records()] == ["q0", "q1"]
    assert first.read_meta()["status"] == "running"

    bench2 = EchoBench(4)
    bar = quiet()
    meta = await run(config(tmp_path, bench2, RuleBackend(say_answer), resume=True), progress=bar)
    assert bench2.scored == ["q2", "q3"]  # q0 and q1 were not run again
    assert [r["task_id"] for r in first.records()] == ["q0", "q1", "q2", "q3"]
    assert meta["status"] == "finished" and meta["n_records"] == 4 and meta["summary"] == {"accuracy": 0.75}
    assert bar.done_before == 2 and bar.done == 4 and bar.successes == 3


async def test_an_existing_run_is_not_overwritten_without_resume(tmp_path: Path):
    await run(config(tmp_path, EchoBench(1), RuleBackend(say_answer)), progress=quiet())
    with pytest.raises(RunDirError, match="--resume"):
        await run(config(tmp_path, EchoBench(1), RuleBackend(say_answer)), progress=quiet())
    with pytest.raises(RunDirError) as err:
        await run(
            config(tmp_path, EchoBench(1), RuleBackend(say_answer), kernel=False, resume=True),
            progress=quiet(),
        )
    assert err.value.field == "kernel"


async def test_a_line_cut_by_an_interruption_is_dropped_and_its_task_rerun(tmp_path: Path):
    await run(config(tmp_path, EchoBench(2), RuleBackend(say_answer)), progress=quiet())
    path = tmp_path / "run" / "results.jsonl"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # q1's line cut mid-way
    bench = EchoBench(2)
    await run(config(tmp_path, bench, RuleBackend(say_answer), resume=True), progress=quiet())
    assert bench.scored == ["q1"]
    assert [json.loads(x)["task_id"] for x in path.read_text().splitlines()] == ["q0", "q1"]


async def test_backend_failures_are_recorded_as_errors_and_retried_on_resume(tmp_path: Path):
    await run(config(tmp_path, EchoBench(3), RuleBackend(say_answer, fail_on="w2")), progress=quiet())
    latest = RunDir(tmp_path / "run").latest()
    assert latest[("q2", 0)]["status"] == "error" and "BackendError" in latest[("q2", 0)]["error"]
    assert latest[("q0", 0)]["status"] == "done"
    bench = EchoBench(3)
    await run(config(tmp_path, bench, RuleBackend(say_answer), resume=True), progress=quiet())
    assert bench.scored == ["q2"]
    assert RunDir(tmp_path / "run").latest()[("q2", 0)]["success"] is True


async def test_an_agent_past_its_deadline_fails_its_task_only(tmp_path: Path):
    async def slow(spec: AgentSpec) -> AgentOutput:
        if spec.episode.prompt.endswith("w0"):
            await asyncio.sleep(60)
        return AgentOutput(answer=spec.episode.prompt.split()[-1])

    fw = Framework("slow", slow)
    await run(
        config(tmp_path, EchoBench(2), RuleBackend(say_answer), framework=fw, task_timeout=0.2),
        progress=quiet(),
    )
    latest = RunDir(tmp_path / "run").latest()
    assert latest[("q0", 0)]["success"] is False and "timed out" in latest[("q0", 0)]["error"]
    assert latest[("q1", 0)]["success"] is True


async def test_samples_run_independent_agents_per_task(tmp_path: Path):
    names: list[str] = []

    async def record(spec: AgentSpec) -> AgentOutput:
        names.append(spec.name)
        return AgentOutput(answer="w0")

    cfg = config(
        tmp_path, EchoBench(2), RuleBackend(say_answer), framework=Framework("rec", record), samples=3
    )
    await run(cfg, progress=quiet())
    assert sorted(names) == ["rec-q0", "rec-q0-s1", "rec-q0-s2", "rec-q1", "rec-q1-s1", "rec-q1-s2"]
    assert len(RunDir(tmp_path / "run").records()) == 6


async def test_concurrency_keeps_that_many_agents_in_flight(tmp_path: Path):
    in_flight = peak = 0

    async def overlap(spec: AgentSpec) -> AgentOutput:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return AgentOutput(answer=None)

    cfg = config(
        tmp_path, EchoBench(6), RuleBackend(say_answer), framework=Framework("o", overlap), concurrency=3
    )
    await run(cfg, progress=quiet())
    assert peak == 3


def test_select_picks_named_tasks_then_limits_and_rejects_unknown_ids():
    tasks = EchoBench(5).load()
    assert [t.id for t in select(tasks, ["q3", "q1"], None)] == ["q3", "q1"]
    assert [t.id for t in select(tasks, [], 2)] == ["q0", "q1"]
    with pytest.raises(InvalidRequestError) as err:
        select(tasks, ["q9"], None)
    assert err.value.field == "tasks"


def test_agent_names_are_safe_kernel_identities():
    assert agent_name("react", "HumanEval/12", 0) == "react-HumanEval_12"
    assert agent_name("react", "a b", 2) == "react-a_b-s2"


async def test_direct_llm_calls_the_backend_with_an_unlimited_slice():
    controls: list[SliceControl] = []
    backend = RuleBackend(say_answer)
    original = backend.generate

    async def spy(request: LLMRequest, *, control: SliceControl, **kw: Any) -> Any:
        controls.append(control)
        return await original(request, control=control, **kw)

    backend.generate = spy  # type: ignore[method-assign]
    result = await DirectLLM(backend).llm_chat(
        [{"role": "user", "content": "say hi"}], agent="a", max_tokens=4
    )
    assert result.text == "I know the answer."
    assert controls[0].max_tokens is None and controls[0].max_seconds is None


def test_progress_shows_running_score_and_eta():
    now = [0.0]
    out = io.StringIO()
    bar = Progress(4, label="he/react", stream=out, clock=lambda: now[0], width=8)
    now[0] = 10.0
    bar.update(True)
    now[0] = 20.0
    bar.update(False)
    assert bar.line() == "he/react [####....] 2/4  score 50.0%  elapsed 0m20s  ETA 0m20s"
    assert out.getvalue().count("\n") == 2  # not a TTY: one line per task


async def test_a_task_whose_episode_cannot_be_built_is_an_error_record_not_a_crash(tmp_path: Path):
    from aios.benchmarks.core import DataNotFoundError

    class Broken(EchoBench):
        async def episode(self, task):  # type: ignore[no-untyped-def]
            if task.id == "q1":
                raise DataNotFoundError("attachment missing", field="data")
            return await super().episode(task)

    meta = await run(config(tmp_path, Broken(3), RuleBackend(say_answer)), progress=quiet())
    latest = RunDir(tmp_path / "run").latest()
    assert latest[("q1", 0)]["status"] == "error" and "attachment missing" in latest[("q1", 0)]["error"]
    assert latest[("q2", 0)]["success"] is True and meta["status"] == "finished"


async def test_a_framework_that_cannot_run_here_fails_before_any_task(tmp_path: Path):
    from aios.adapters.base import FrameworkNotInstalledError

    def missing() -> None:
        raise FrameworkNotInstalledError("not available in this environment", field="framework")

    async def never(spec: AgentSpec) -> AgentOutput:
        raise AssertionError("no task may start")

    fw = Framework("x", never, preflight=missing)
    with pytest.raises(FrameworkNotInstalledError):
        await run(config(tmp_path, EchoBench(2), RuleBackend(say_answer), framework=fw), progress=quiet())
    assert not (tmp_path / "run").exists()
