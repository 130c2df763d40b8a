"""A scripted backend for tests: answers from a script, records requests, and checks itself.

Adapter authors (ours and third parties') test against it instead of a model: each request gets
the next scripted answer, every request is kept for assertions, a call nobody scripted fails
loudly, and ``check()`` fails the test if a scripted answer was never asked for. It is not a
config-selectable backend kind: tests hand it to ``Kernel(backends={...})`` directly.

A scripted answer is an ``LLMResult``, a ``Reply`` (a result plus the pieces a streaming caller
receives), or a function of the request returning either (sync or async; it may raise to script
a failure). ``text`` and ``tool_call`` build the common replies. Their results name the model
``scripted-model``, unlike the backend's default name ``scripted``, so a test can tell which of
the two an adapter reports.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aios.backends.base import Capabilities, Completed, Outcome, SliceControl, Snapshot
from aios.errors import InvalidRequestError
from aios.types import LLMRequest, LLMResult, ToolCall, Usage

__all__ = ["Answer", "Reply", "ScriptedBackend", "text", "tool_call", "word_pieces"]


@dataclass(slots=True, frozen=True)
class Reply:
    """One scripted answer; ``pieces`` is what a streaming caller receives.

    ``pieces=None`` streams the result's ``segments`` (or its whole text when it has none).
    Empty pieces are never delivered.
    """

    result: LLMResult
    pieces: Sequence[str] | None = None


#: One entry of a script: a result, a reply, or a function of the request returning either.
Answer: TypeAlias = (
    LLMResult | Reply | Callable[[LLMRequest], LLMResult | Reply | Awaitable[LLMResult | Reply]]
)

# A word with the whitespace around it, so that the pieces join back to the text exactly.
_WORD = re.compile(r"\s*\S+\s*")


def word_pieces(value: str) -> list[str]:
    """``value`` cut after each word's trailing whitespace (``"a b"`` -> ``["a ", "b"]``)."""
    return _WORD.findall(value) or ([value] if value else [])


def text(
    value: str,
    *,
    pieces: Sequence[str] | None = None,
    prompt_tokens: int = 11,
    completion_tokens: int | None = None,
    model: str = "scripted-model",
) -> Reply:
    """A text answer streamed in ``pieces`` (default: word by word).

    The pieces are also the result's ``segments``, so an adapter that replays a finished result
    piece by piece sees the same pieces as one that streamed it. ``completion_tokens`` defaults
    to the number of words.
    """
    cut = list(pieces) if pieces is not None else word_pieces(value)
    if "".join(cut) != value:
        raise InvalidRequestError(f"pieces {cut!r} do not join to the text {value!r}", field="pieces")
    usage = Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=len(value.split()) if completion_tokens is None else completion_tokens,
    )
    return Reply(LLMResult(text=value, usage=usage, model=model, segments=cut))


def tool_call(
    name: str,
    arguments: Mapping[str, Any] | str,
    *,
    call_id: str = "call_1",
    said: str = "",
    stream_json: bool = False,
    prompt_tokens: int = 13,
    completion_tokens: int = 7,
    model: str = "scripted-model",
) -> Reply:
    """An answer calling one tool; ``arguments`` is a mapping or raw JSON text (kept as given).

    ``said`` is text the model wrote beside the call. A streaming caller receives ``said``, or,
    with ``stream_json``, the call as the embedded model writes it (``{"name": ..., "arguments":
    {...}}``), which an adapter must recognise and hold back rather than show as text.
    """
    raw = arguments if isinstance(arguments, str) else json.dumps(dict(arguments))
    result = LLMResult(
        text=said,
        finish_reason="tool_calls",
        tool_calls=[ToolCall(id=call_id, name=name, arguments=raw)],
        usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
        model=model,
        segments=[said] if said else [],
    )
    if not stream_json:
        return Reply(result)
    # Spliced, not re-encoded: raw arguments stream exactly as given, even when they are not JSON.
    return Reply(result, pieces=[f'{{"name": {json.dumps(name)}, "arguments": {raw}}}'])


class ScriptedBackend:
    """Answers each request with the next scripted answer; ``check()`` fails on any surprise.

    ``requests`` holds a copy of every request received (as it was when sent); ``unexpected``
    those that came after the script ran out, each of which also failed its call.
    """

    def __init__(
        self,
        *answers: Answer,
        name: str = "scripted",
        model: str = "scripted-model",
        capabilities: Capabilities | None = None,
    ):
        for i, answer in enumerate(answers):
            if not isinstance(answer, LLMResult | Reply) and not callable(answer):
                raise InvalidRequestError(
                    f"answers[{i}] must be an LLMResult, a Reply or a callable, got {type(answer).__name__}",
                    field=f"answers[{i}]",
                )
        self.name = name
        self.model = model
        # snapshot=None: a scripted answer is whole, so the dispatcher never tries to cut it.
        self.capabilities = capabilities or Capabilities(streaming=True, snapshot=None, capacity=1)
        self._answers: deque[Answer] = deque(answers)
        self.requests: list[LLMRequest] = []
        self.unexpected: list[LLMRequest] = []

    @property
    def remaining(self) -> int:
        """How many scripted answers have not been asked for yet."""
        return len(self._answers)

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
        """The next scripted answer, streamed piece by piece to ``on_delta`` when given."""
        # A copy: adapters may mutate their message lists after the call returns.
        sent = copy.deepcopy(request)
        self.requests.append(sent)
        if not self._answers:
            self.unexpected.append(sent)
            raise AssertionError(f"unexpected LLM call to {self.name!r}: {_last_message(request)}")
        answer = self._answers.popleft()
        reply = await _resolve(answer, request)
        # A copy: the dispatcher fills in fields, and one scripted object may answer twice.
        result = copy.deepcopy(reply.result)
        if on_delta is not None:
            pieces = reply.pieces if reply.pieces is not None else (result.segments or [result.text])
            for piece in pieces:
                if piece:
                    on_delta(piece)
        return Completed(result)

    def check(self) -> None:
        """Fail (``AssertionError``) if a call was not scripted or a scripted answer went unused."""
        problems = []
        if self.unexpected:
            calls = "; ".join(_last_message(r) for r in self.unexpected)
            problems.append(f"{len(self.unexpected)} unexpected LLM call(s): {calls}")
        if self._answers:
            problems.append(
                f"{len(self._answers)} scripted answer(s) never asked for: {list(self._answers)!r}"
            )
        if problems:
            raise AssertionError(f"{self.name}: " + "; ".join(problems))


async def _resolve(answer: Answer, request: LLMRequest) -> Reply:
    """The reply an answer gives to ``request`` (calling and awaiting it if it is a function)."""
    value: object = answer
    if callable(answer):
        value = answer(request)
        if inspect.isawaitable(value):
            value = await value
    if isinstance(value, Reply):
        return value
    if isinstance(value, LLMResult):
        return Reply(value)
    raise TypeError(f"a scripted function must return an LLMResult or a Reply, got {type(value).__name__}")


def _last_message(request: LLMRequest) -> str:
    return repr(request.messages[-1]) if request.messages else "(no messages)"
