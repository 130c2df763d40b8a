"""A scripted LLM backend that checks itself, and a kernel built on it (no framework import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.kernel import Kernel
from aios.types import LLMRequest, LLMResult, ToolCall, Usage


@dataclass(slots=True)
class Reply:
    """One scripted answer; ``pieces`` is what a streaming caller receives (default: the text)."""

    result: LLMResult
    pieces: list[str] | None = None


def text(s: str, pieces: list[str] | None = None) -> Reply:
    """A scripted text answer (usage: 11 prompt tokens, 3 completion tokens)."""
    return Reply(
        LLMResult(text=s, usage=Usage(prompt_tokens=11, completion_tokens=3), model="scripted"), pieces
    )


def tool_call(name: str, arguments: str, call_id: str = "call_1") -> Reply:
    """A scripted tool call."""
    return Reply(
        LLMResult(
            text="",
            finish_reason="tool_calls",
            tool_calls=[ToolCall(call_id, name, arguments)],
            usage=Usage(prompt_tokens=13, completion_tokens=7),
            model="scripted",
        )
    )


class ScriptedBackend:
    """Answers each request with the next reply; records requests; complains about surprises."""

    def __init__(self, *replies: Reply, name: str = "scripted"):
        self.name = name
        self.model = "scripted"
        self.capabilities = Capabilities(streaming=True, snapshot=None, capacity=1)
        self.replies = list(replies)
        self.requests: list[LLMRequest] = []
        self.unexpected: list[LLMRequest] = []

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
        """The next scripted reply, streamed piece by piece when the caller streams."""
        if not self.replies:
            self.unexpected.append(request)
            raise AssertionError(f"unexpected LLM call: {request.messages[-1]!r}")
        self.requests.append(request)
        reply = self.replies.pop(0)
        if on_delta is not None:
            pieces = reply.pieces if reply.pieces is not None else [reply.result.text]
            for piece in pieces:
                if piece:
                    on_delta(piece)
        return Completed(reply.result)

    def check(self) -> None:
        """Every reply was asked for and nothing else was."""
        assert not self.unexpected, f"unexpected LLM calls: {self.unexpected}"
        assert not self.replies, f"{len(self.replies)} scripted replies were never asked for"


@asynccontextmanager
async def scripted_kernel(*replies: Reply) -> AsyncIterator[tuple[Kernel, ScriptedBackend]]:
    """A kernel in this loop whose only core is a ``ScriptedBackend``; checks it on exit."""
    backend = ScriptedBackend(*replies)
    async with Kernel(backends={"scripted": backend}, entry_points=False) as kernel:
        yield kernel, backend
    backend.check()
