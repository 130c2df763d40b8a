"""A scripted backend that checks itself: unexpected calls and unused scripts fail the test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.types import LLMRequest, LLMResult, ToolCall, Usage

Script = Callable[[LLMRequest], LLMResult] | LLMResult


def text(s: str) -> LLMResult:
    """A scripted text answer."""
    return LLMResult(text=s, usage=Usage(prompt_tokens=5, completion_tokens=len(s.split())))


def call(name: str, arguments: dict[str, Any] | str, id: str = "call_1") -> LLMResult:
    """A scripted tool call."""
    args = arguments if isinstance(arguments, str) else __import__("json").dumps(arguments)
    return LLMResult(
        text="", finish_reason="tool_calls", tool_calls=[ToolCall(id, name, args)], usage=Usage(5, 7)
    )


class ScriptedBackend:
    """Answers each request with the next script; records every request it saw."""

    def __init__(self, *scripts: Script, name: str = "scripted"):
        self.name = name
        self.model = "scripted"
        self.capabilities = Capabilities(streaming=True, snapshot=None, capacity=1)
        self.scripts = list(scripts)
        self.requests: list[LLMRequest] = []

    async def start(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to close."""

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
    ) -> Outcome:
        """The next scripted answer (AssertionError when the script is exhausted)."""
        assert self.scripts, f"unexpected LLM call: {request.messages[-1]}"
        self.requests.append(request)
        script = self.scripts.pop(0)
        result = script(request) if callable(script) else script
        if on_delta is not None and result.text:
            on_delta(result.text)
        return Completed(result)

    def assert_done(self) -> None:
        """Every script was used."""
        assert not self.scripts, f"{len(self.scripts)} scripted answers were never asked for"
