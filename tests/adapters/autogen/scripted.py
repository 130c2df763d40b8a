"""A scripted LLM backend for adapter tests: answers from a list and checks itself.

It fails the test on a call nobody scripted and, at ``check()``, on a scripted answer nobody
asked for. Every request it receives is kept, so tests can assert what the adapter sent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.types import LLMRequest, LLMResult, ToolCall, Usage

Answer = LLMResult | Callable[[LLMRequest], Awaitable[LLMResult]]


def text(value: str, *, pieces: list[str] | None = None, prompt_tokens: int = 11) -> LLMResult:
    """A text answer (``pieces`` are the slices a stream delivers; default: one per word)."""
    segments = pieces if pieces is not None else [w for w in value.split(" ")]
    if pieces is None and len(segments) > 1:
        segments = [w + " " for w in segments[:-1]] + [segments[-1]]
    assert "".join(segments) == value
    return LLMResult(
        text=value,
        finish_reason="stop",
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=len(segments)),
        model="scripted-model",
        segments=segments,
    )


def call(name: str, arguments: dict[str, Any], *, call_id: str = "call_1", said: str = "") -> LLMResult:
    """A tool-call answer (``said``: text the model wrote beside the call)."""
    return LLMResult(
        text=said,
        finish_reason="tool_calls",
        tool_calls=[ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))],
        usage=Usage(prompt_tokens=13, completion_tokens=7),
        model="scripted-model",
        segments=[json.dumps({"name": name, "arguments": arguments})],
    )


class ScriptedBackend:
    """Implements the Backend protocol from a script of answers."""

    capabilities = Capabilities(streaming=True, snapshot=None, capacity=4, tools=True)

    def __init__(self, script: list[Answer], *, name: str = "scripted"):
        self.name = name
        self.model = "scripted-model"
        self._script = list(script)
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
        """The next scripted answer (its segments go to ``on_delta`` one by one)."""
        self.requests.append(copy.deepcopy(request))
        if not self._script:
            self.unexpected.append(request)
            raise AssertionError(f"unexpected LLM call: {request.messages!r}")
        answer = self._script.pop(0)
        result = await answer(request) if callable(answer) else copy.deepcopy(answer)
        if on_delta is not None:
            for piece in result.segments or [result.text]:
                on_delta(piece)
        return Completed(result)

    def check(self) -> None:
        """Fail if a call was not scripted or a scripted answer was never asked for."""
        assert not self.unexpected, f"{len(self.unexpected)} unexpected LLM call(s)"
        assert not self._script, f"{len(self._script)} scripted answer(s) never used"
