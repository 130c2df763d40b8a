"""A scripted LLM backend: answers from a list, records requests, and checks itself."""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.types import LLMRequest, LLMResult, ToolCall, Usage


def answer(
    text: str, *, prompt: int = 7, completion: int | None = None, segments: list[str] | None = None
) -> LLMResult:
    """A scripted text answer (usage made up but distinct, so tests can check it travels)."""
    return LLMResult(
        text=text,
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=len(text.split()) if completion is None else completion
        ),
        model="scripted-model",
        segments=segments if segments is not None else [text],
    )


def call(
    name: str, arguments: str, *, id: str = "call_1", prompt: int = 11, completion: int = 9
) -> LLMResult:
    """A scripted answer that calls one tool with raw JSON ``arguments``."""
    return LLMResult(
        text="",
        finish_reason="tool_calls",
        tool_calls=[ToolCall(id=id, name=name, arguments=arguments)],
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
        model="scripted-model",
    )


class ScriptedBackend:
    """Returns the scripted results in order; ``verify()`` fails on unexpected calls or leftovers."""

    def __init__(self, script: Iterable[LLMResult], *, name: str = "scripted"):
        self.name = name
        self.model = "scripted-model"
        self.capabilities = Capabilities(streaming=True, snapshot=None, capacity=1, tools=True)
        self._script: deque[LLMResult] = deque(script)
        self.requests: list[LLMRequest] = []
        self.unexpected: list[LLMRequest] = []

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
        """The next scripted result (its segments streamed through ``on_delta``)."""
        if not self._script:
            self.unexpected.append(request)
            raise AssertionError(f"unexpected LLM call: {request.messages!r}")
        self.requests.append(request)
        result = dataclasses.replace(self._script.popleft())
        if on_delta is not None and result.text:
            for piece in result.segments:
                on_delta(piece)
        result.backend = self.name
        return Completed(result)

    def verify(self) -> None:
        """Fail unless every scripted result was used and no call came unscripted."""
        assert not self.unexpected, f"{len(self.unexpected)} unexpected LLM call(s)"
        assert not self._script, f"{len(self._script)} scripted result(s) never requested"
