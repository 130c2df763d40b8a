"""Chat models: every call of any ``BaseChatModel`` becomes an LLM syscall.

Four base-class methods are wrapped: ``_generate_with_cache`` / ``_agenerate_with_cache`` (every
``invoke``, ``batch``, ``generate`` and implicit streaming passes through them) and ``stream`` /
``astream`` (explicit streaming, which bypasses them). The provider calls beneath them
(``_generate``, ``_stream`` and their async forms) are defined by each subclass, so they cannot be
patched once on the base class. Instead each wrapper runs LangChain's own method body with
``self`` replaced by a ``KernelView`` of the model: every attribute still comes from the model
(cache, callbacks, rate limiter, metadata, ``output_version``), and only the provider calls are
the view's, which go to the kernel. So callbacks, caching and message ids behave as without the
patch, for ``ChatOpenAI`` and for any other chat model, and the model's client never sends a
request.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import aclosing
from typing import Any

from aios import sdk
from aios.adapters.langchain.convert import (
    ChatCall,
    build_call,
    chat_result,
    closing_chunks,
    result_chunks,
    text_chunk,
)
from aios.kernel import current_kernel
from aios.types import LLMResult


def _ask_sync(call: ChatCall) -> LLMResult:
    return sdk.llm_chat_sync(call.messages, agent=call.agent, timeout=call.timeout, **call.params)


async def _ask(call: ChatCall) -> LLMResult:
    return await sdk.llm_chat(call.messages, agent=call.agent, timeout=call.timeout, **call.params)


def _kernel_in_this_loop() -> bool:
    # sdk.llm_stream serves only a kernel running in the caller's loop, not the default kernel thread.
    k = current_kernel.get()
    return k is not None and k.running


class KernelView:
    """Stands in for a chat model inside LangChain's method bodies; provider calls go to the kernel."""

    __slots__ = ("_model",)

    # Native protocol-event producers would call the provider; None makes LangChain bridge
    # through the view's _stream/_astream instead.
    _stream_chat_model_events = None
    _astream_chat_model_events = None

    def __init__(self, model: Any) -> None:
        object.__setattr__(self, "_model", model)

    def __getattr__(self, name: str) -> Any:
        if name == "_model":  # only before __init__ (a copy): never recurse
            raise AttributeError(name)
        return getattr(self._model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._model, name, value)

    def __repr__(self) -> str:
        return f"KernelView({self._model!r})"

    def _generate(
        self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        """One LLM syscall on the default kernel; the answer as a ``ChatResult``."""
        call = build_call(self._model, messages, stop, kwargs)
        return chat_result(_ask_sync(call), call.response_format)

    async def _agenerate(
        self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        """One LLM syscall (local kernel or default kernel); the answer as a ``ChatResult``."""
        call = build_call(self._model, messages, stop, kwargs)
        return chat_result(await _ask(call), call.response_format)

    def _stream(
        self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[Any]:
        """Chunks of one LLM syscall.

        A synchronous caller reaches the kernel only through ``sdk.llm_chat_sync``, which returns
        the whole result: it is replayed as word-sized chunks (then tool-call chunks and a last
        chunk with the usage), so the chunks add up to exactly what ``invoke`` returns.
        """
        call = build_call(self._model, messages, stop, kwargs)
        yield from result_chunks(_ask_sync(call), call.response_format)

    async def _astream(
        self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Chunks of one LLM syscall, streamed as generated when the kernel runs in this loop.

        With the process-default kernel (another thread) the SDK has no streaming call, so the
        whole result is replayed as chunks, as in ``_stream``.
        """
        call = build_call(self._model, messages, stop, kwargs)
        if not _kernel_in_this_loop():
            for chunk in result_chunks(await _ask(call), call.response_format):
                yield chunk
            return
        stream = await sdk.llm_stream(call.messages, agent=call.agent, timeout=call.timeout, **call.params)
        async for piece in stream:
            if piece:
                yield text_chunk(piece)
        assert stream.result is not None  # set by the stream once its iteration ends
        for chunk in closing_chunks(stream.result, call.response_format):
            yield chunk


def wrap_generate_with_cache(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseChatModel._generate_with_cache`` whose provider call is a syscall."""

    @functools.wraps(original)
    def _generate_with_cache(
        self: Any, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        return original(KernelView(self), messages, stop, run_manager, **kwargs)

    return _generate_with_cache


def wrap_agenerate_with_cache(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseChatModel._agenerate_with_cache`` whose provider call is a syscall."""

    @functools.wraps(original)
    async def _agenerate_with_cache(
        self: Any, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        return await original(KernelView(self), messages, stop, run_manager, **kwargs)

    return _agenerate_with_cache


def wrap_stream(original: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """``BaseChatModel.stream`` whose chunks come from a syscall."""

    @functools.wraps(original)
    def stream(
        self: Any, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        yield from original(KernelView(self), input, config, stop=stop, **kwargs)

    return stream


def wrap_astream(
    original: Callable[..., AsyncGenerator[Any, None]],
) -> Callable[..., AsyncGenerator[Any, None]]:
    """``BaseChatModel.astream`` whose chunks come from a syscall."""

    @functools.wraps(original)
    async def astream(
        self: Any, input: Any, config: Any = None, *, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncGenerator[Any, None]:
        # aclosing: a consumer that stops early closes LangChain's generator (and its run) now.
        async with aclosing(original(KernelView(self), input, config, stop=stop, **kwargs)) as chunks:
            async for chunk in chunks:
                yield chunk

    return astream
