"""Test doubles for the harness: a rule-based backend and a tiny benchmark whose answers are known."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.benchmarks.core import AgentDefaults, AgentOutput, Episode, Score, Task, success_rate
from aios.types import LLMRequest, LLMResult, ToolCall, Usage, message_text


class RuleBackend:
    """Thinks one fixed sentence; forced to act, calls ``finish`` with ``answer(task text)``."""

    def __init__(self, answer: Callable[[str], str], *, name: str = "embedded", fail_on: str | None = None):
        self.name = name
        self.model = "rule"
        self.capabilities = Capabilities(streaming=True, snapshot=None, capacity=1)
        self.answer = answer
        self.fail_on = fail_on
        self.requests: list[LLMRequest] = []
        self.started = 0
        self.closed = 0

    async def start(self) -> None:
        """Count starts."""
        self.started += 1

    async def close(self) -> None:
        """Count closes."""
        self.closed += 1

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """A thought, or a ``finish`` call whose answer depends on the task (first user message)."""
        self.requests.append(request)
        task = next(message_text(m) for m in request.messages if m["role"] == "user")
        if self.fail_on is not None and self.fail_on in task:
            from aios.errors import BackendError

            raise BackendError("scripted backend failure", backend=self.name)
        if request.tool_choice == "required":
            args = json.dumps({"answer": self.answer(task)})
            call = ToolCall("call_1", "finish", args)
            return Completed(LLMResult("", "tool_calls", [call], Usage(10, 5), self.model, self.name))
        return Completed(
            LLMResult("I know the answer.", usage=Usage(10, 4), model=self.model, backend=self.name)
        )


class EchoBench:
    """Tasks "q0".."qN": the right answer to ``say X`` is ``X``."""

    name = "echo"
    metric = "accuracy"
    defaults = AgentDefaults(max_steps=2, thought_tokens=8, action_tokens=16)

    def __init__(self, n: int = 4):
        self.n = n
        self.scored: list[str] = []

    def load(self, source: str | None = None) -> list[Task]:
        """``n`` tasks."""
        return [Task(id=f"q{i}", data={"word": f"w{i}"}) for i in range(self.n)]

    async def episode(self, task: Task) -> Episode:
        """Ask to say the word."""
        return Episode(prompt=f"say {task.data['word']}", max_steps=2)

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Right if the answer is the word."""
        self.scored.append(task.id)
        return Score(output.answer == task.data["word"], {"answer_len": len(output.answer or "")})

    def summarize(self, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Accuracy."""
        return {"accuracy": success_rate(records)}


def say_answer(task: str) -> str:
    """The right answer of EchoBench's prompt, except for w1 (always wrong)."""
    word = task.split()[-1]
    return "nope" if word == "w1" else word
