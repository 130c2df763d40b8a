"""A simulated backend: deterministic tokens at a configurable speed, no model.

Used by scheduling tests (on a fake clock, where each token advances virtual time), by the
overhead benchmark (zero latency: what is measured is the kernel alone), and by anyone who wants
to try the kernel's mechanics without a model. It is labelled ``sim`` in every metric, so its
numbers are never mistaken for a model's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aios.backends.base import Capabilities, Completed, Outcome, Preempted, SliceControl, Snapshot
from aios.errors import ConfigError
from aios.types import FinishReason, LLMRequest, LLMResult, Usage, message_text

#: At zero latency, tokens generated between two yields to the event loop.
_YIELD_EVERY = 64


class SimBackend:
    """Emits ``max_tokens`` tokens ``"t0 t1 ..."`` (or ``output_tokens`` if set), text snapshots."""

    def __init__(
        self,
        *,
        name: str = "sim",
        model: str = "sim",
        capacity: int = 1,
        token_time: float = 0.0,
        prompt_token_time: float = 0.0,
        output_tokens: int | None = None,
        advance: Callable[[float], None] | None = None,
        fail: Callable[[LLMRequest], BaseException | None] | None = None,
        trace: list[tuple[str, int]] | None = None,
    ):
        # An int check first: NaN passes 'capacity < 1' and would break the dispatcher's slot count.
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {capacity}", field="capacity")
        if token_time < 0 or prompt_token_time < 0:
            raise ConfigError("token times must be >= 0", field="token_time")
        self.name = name
        self.model = model
        self.capabilities = Capabilities(streaming=True, snapshot="text", capacity=capacity, tools=False)
        self.token_time = token_time
        self.prompt_token_time = prompt_token_time
        self.output_tokens = output_tokens
        self.advance = advance
        self.fail = fail
        #: (first user message, token index) per generated token, for interleaving tests.
        self.trace = trace
        self.in_flight = 0
        self.max_in_flight = 0

    async def start(self) -> None:
        """Nothing to load."""

    async def close(self) -> None:
        """Nothing to release."""

    async def _spend(self, seconds: float, step: int = 0) -> None:
        if self.advance is not None:
            self.advance(seconds)
            await asyncio.sleep(0)
        elif seconds > 0:
            await asyncio.sleep(seconds)
        elif step % _YIELD_EVERY == _YIELD_EVERY - 1:
            # Even at zero latency a long generation must let deadlines and other agents run;
            # every few tokens, not every one, so the overhead benchmark measures the kernel.
            await asyncio.sleep(0)

    async def generate(
        self,
        request: LLMRequest,
        *,
        control: SliceControl,
        resume: Snapshot | None = None,
        on_delta: Callable[[str], None] | None = None,
        priority: int = 0,
    ) -> Outcome:
        """Generate the next tokens of the deterministic answer, cutting when the slice ends."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request, control, resume, on_delta)
        finally:
            self.in_flight -= 1

    async def _generate(
        self,
        request: LLMRequest,
        control: SliceControl,
        resume: Snapshot | None,
        on_delta: Callable[[str], None] | None,
    ) -> Outcome:
        if self.fail is not None and (exc := self.fail(request)) is not None:
            raise exc
        label = next((message_text(m) for m in request.messages if m.get("role") == "user"), "")
        prompt_tokens = sum(len(message_text(m).split()) + 4 for m in request.messages)
        target = min(request.max_tokens, self.output_tokens or request.max_tokens)
        if resume is None:
            done, text, segments = 0, "", []
            usage = Usage(prompt_tokens=prompt_tokens)
        else:
            done, text, segments = resume.tokens, resume.text, list(resume.segments)
            usage = Usage(
                prompt_tokens=resume.usage.prompt_tokens,
                completion_tokens=resume.usage.completion_tokens,
                recomputed_tokens=resume.usage.recomputed_tokens + prompt_tokens + done,
            )
        await self._spend(self.prompt_token_time * (prompt_tokens + done if resume else prompt_tokens))
        segment = ""
        while done < target:
            piece = f"t{done} " if done < target - 1 else f"t{done}"
            await self._spend(self.token_time, done)
            if self.trace is not None:
                self.trace.append((label, done))
            done += 1
            usage.completion_tokens += 1
            segment += piece
            if on_delta is not None:
                on_delta(piece)
            if control.tick() and done < target:
                segments.append(segment)
                snap = Snapshot(
                    kind="text",
                    text=text + segment,
                    tokens=done,
                    usage=usage,
                    segments=segments,
                    backend=self.name,
                )
                return Preempted(snap)
        segments.append(segment)
        finish: FinishReason = "length" if target == request.max_tokens else "stop"
        return Completed(
            LLMResult(
                text=text + segment,
                finish_reason=finish,
                usage=usage,
                model=self.model,
                backend=self.name,
                segments=segments,
            )
        )
