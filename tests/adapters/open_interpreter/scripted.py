"""A scripted backend for the Open Interpreter adapter tests: answers from a list, checks itself."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.types import LLMRequest, LLMResult, ToolCall, Usage


def text(s: str) -> LLMResult:
    """A scripted text answer."""
    return LLMResult(text=s, usage=Usage(prompt_tokens=11, completion_tokens=3))


def execute(code: str, language: str = "python", id: str = "call_7") -> LLMResult:
    """A scripted call of Open Interpreter's ``execute`` tool."""
    args = json.dumps({"language": language, "code": code})
    return LLMResult(
        text="",
        finish_reason="tool_calls",
        tool_calls=[ToolCall(id, "execute", args)],
        usage=Usage(prompt_tokens=13, completion_tokens=9),
    )


class ScriptedBackend:
    """Answers each LLM request with the next scripted result and records the request.

    An LLM call beyond the script fails the call (and so the test); ``verify`` fails the test
    if a scripted answer was never asked for.
    """

    def __init__(self, script: Sequence[LLMResult | Callable[[LLMRequest], LLMResult]]):
        self.name = "scripted"
        self.model = "scripted"
        self.capabilities = Capabilities(streaming=False, snapshot=None, capacity=1)
        self.script = list(script)
        self.requests: list[LLMRequest] = []

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """The next scripted result."""
        self.requests.append(request)
        assert self.script, f"unexpected LLM call, last message: {request.messages[-1]!r}"
        step = self.script.pop(0)
        return Completed(step(request) if callable(step) else step)

    def verify(self) -> None:
        """Every scripted answer was used."""
        assert not self.script, f"{len(self.script)} scripted answer(s) never asked for: {self.script}"
