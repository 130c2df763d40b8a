"""MINT's code subset (HumanEval 45 + MBPP 91 = 136 tasks): multi-turn coding with execution feedback.

Data: the folder with ``humaneval/test_prompts.jsonl``, ``mbpp/test_prompts.jsonl``, their
``in_context_with_tool.txt`` and ``templates/template_with_tool.txt`` (from xingyaoww/mint-bench:
``data/processed/{humaneval,mbpp}/test_prompts.json``, ``mint/tasks/in_context_examples/`` and
``mint/prompt/templates/``). Looked for at ``--data``, then ``$AIOS_MINT_DATA``, then
``../shared/data/mint`` next to the project root.

The prompt is MINT's own (template, in-context example, "Task:" and the task prompt, built as
upstream does); a tool-calling framework is told that ``execute`` is ``<execute>`` and ``finish``
is ``<solution>``. The headline metric is the success rate within 5 turns; ``success@k`` for
k = 1..5 counts a task solved by its k-th action.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aios.managers.tools import Tool

from ..core import JSON, AgentDefaults, AgentOutput, DataNotFoundError, Episode, Score, Task, success_rate
from ..execution import CodeRunner, Limits, PythonSession
from .env import MAX_PROPOSALS, MAX_STEPS, MintEnv

ENV_VAR = "AIOS_MINT_DATA"
SUBSETS = ("humaneval", "mbpp")
SOLUTION_LIMITS = Limits(timeout_s=10.0, memory_mb=512)
SESSION_LIMITS = Limits(timeout_s=30.0, memory_mb=512)
HOW_TO_GET = (
    "pass --data DIR or set AIOS_MINT_DATA to a folder holding humaneval/ and mbpp/ "
    "(test_prompts.jsonl and in_context_with_tool.txt each) and templates/template_with_tool.txt, "
    "taken from github.com/xingyaoww/mint-bench (data/processed/<subset>/test_prompts.json, "
    "mint/tasks/in_context_examples/<subset>/with_tool.txt, mint/prompt/templates/)"
)
TOOL_NOTE = (
    "In this environment your tools are the actions: calling execute(code) is <execute>, and "
    "calling finish(answer) with your solution code is <solution>."
)


class WrongAnswerError(Exception):
    """A proposed solution failed MINT's check; its message is the observation for the agent."""


def project_root() -> Path:
    """The project's root folder (where pyproject.toml lives) for a source checkout."""
    return Path(__file__).resolve().parents[2]


def find_data(source: str | None) -> Path:
    """The MINT data folder, or ``DataNotFoundError`` saying how to obtain it."""
    candidates = [source, os.environ.get(ENV_VAR), str(project_root().parent / "shared" / "data" / "mint")]
    for cand in candidates:
        if cand and all((Path(cand) / s / "test_prompts.jsonl").is_file() for s in SUBSETS):
            return Path(cand)
    tried = [c for c in candidates if c]
    raise DataNotFoundError(f"MINT data not found (looked in {tried}): {HOW_TO_GET}", field="data")


def task_prompt(subset: str, raw_prompt: str) -> str:
    """The task text as MINT builds it for each subset."""
    if subset == "humaneval":
        return "Complete the following code:\n\n" + raw_prompt
    return raw_prompt.replace('"""', "").strip()


class Mint:
    """The MINT code-generation subset (loader, MINT's protocol, scorer)."""

    name = "mint"
    metric = "success rate (5 turns)"
    defaults = AgentDefaults(max_steps=MAX_STEPS, thought_tokens=48, action_tokens=384)

    def __init__(self, *, data: str | None = None, runner: CodeRunner | None = None):
        self.data = data
        self.runner = runner or CodeRunner()
        self._root: Path | None = None

    def load(self, source: str | None = None) -> list[Task]:
        """The 136 tasks, HumanEval's first."""
        root = find_data(source or self.data)
        self._root = root
        tasks: list[Task] = []
        for subset in SUBSETS:
            with (root / subset / "test_prompts.jsonl").open(encoding="utf-8") as fh:
                for i, line in enumerate(fh):
                    if not line.strip():
                        continue
                    row = json.loads(line)
                    if "prompt" not in row or "reference" not in row:
                        raise DataNotFoundError(f"{subset} row {i} lacks prompt/reference", field="data")
                    tasks.append(
                        Task(id=f"{subset}/{row['task_id']}", data={**row, "subset": subset}, group=subset)
                    )
        return tasks

    def user_prompt(self, task: Task) -> str:
        """MINT's first user message: template, in-context example and the task."""
        root = self._root or find_data(self.data)
        subset = str(task.data["subset"])
        template = (root / "templates" / "template_with_tool.txt").read_text(encoding="utf-8")
        example_file = root / subset / "in_context_with_tool.txt"
        example = example_file.read_text(encoding="utf-8") if example_file.is_file() else ""
        return template.format(
            max_total_steps=MAX_STEPS,
            max_propose_solution=MAX_PROPOSALS,
            tool_desc="",
            in_context_example=example,
            task_prompt="Task:\n" + task_prompt(subset, str(task.data["prompt"])),
        )

    def make_env(self, task: Task) -> MintEnv:
        """A fresh environment for ``task`` (its own session and the reference check)."""
        reference = str(task.data["reference"])

        async def check(solution: str) -> bool:
            verdict = await self.runner.check_program(solution + "\n" + reference, SOLUTION_LIMITS)
            return verdict.passed

        return MintEnv(session=PythonSession(self.runner, SESSION_LIMITS), check=check)

    async def episode(self, task: Task) -> Episode:
        """MINT's prompt, ``execute`` and a checking ``finish``, ended by the environment."""
        env = self.make_env(task)

        async def execute(code: str) -> str:
            """Run Python code in a persistent session (like <execute>); names you define persist.

            Args:
                code: The Python code to run.
            """
            return await env.execute(code)

        async def finish(answer: str) -> str:
            """Propose your solution (like <solution>): the complete code of the function.

            Args:
                answer: The complete solution code.
            """
            ok, obs = await env.propose(answer)
            if not ok:
                raise WrongAnswerError(obs)
            return obs

        async def self_check(answer: str | None) -> tuple[bool, str]:
            if env.solved_at is not None:
                return True, "the solution was accepted"
            return False, "Your answer is wrong."

        return Episode(
            prompt=self.user_prompt(task),
            tools=[Tool.from_function(execute, timeout=SESSION_LIMITS.timeout_s + 15)],
            finish=Tool.from_function(finish, name="finish", timeout=SOLUTION_LIMITS.timeout_s + 15),
            system=TOOL_NOTE,
            max_steps=MAX_STEPS,
            is_done=lambda: env.finished,
            self_check=self_check,
            state=env,
        )

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Solved within the budget (the environment judged each proposal as it came)."""
        env = episode.state
        assert isinstance(env, MintEnv)
        metrics: dict[str, JSON] = {
            "solved_at": env.solved_at,
            "actions": env.actions,
            "proposals": env.proposals,
            "invalid": env.invalid,
            "terminate_reason": env.terminate_reason or "agent_stopped",
        }
        detail = (
            f"solved at action {env.solved_at}"
            if env.solved_at
            else f"unsolved ({metrics['terminate_reason']})"
        )
        return Score(success=env.solved_at is not None, metrics=metrics, detail=detail)

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """Success rate, then success@k for k = 1..5 turns, overall and per subset."""
        out = {"success rate (5 turns)": success_rate(records)}
        for k in range(1, MAX_STEPS + 1):
            out[f"success@{k}"] = _solved_by(records, k)
        for subset in SUBSETS:
            part = [r for r in records if r.get("group") == subset]
            if part:
                out[f"{subset} success rate"] = success_rate(part)
        return out


def _solved_by(records: Sequence[Mapping[str, Any]], k: int) -> float:
    if not records:
        return 0.0
    hits = 0
    for r in records:
        at = (r.get("metrics") or {}).get("solved_at")
        hits += bool(r.get("success")) and isinstance(at, int) and at <= k
    return hits / len(records)
