"""MetaGPT's LLM calls as kernel LLM syscalls, answered in MetaGPT's own (OpenAI) types.

Whatever MetaGPT asks a provider (``aask``, ``acompletion_text``, ``aask_code``, ``acompletion``)
ends in one of three provider primitives, which the adapter replaces on the OpenAI provider family
(MetaGPT's default, ``OpenAILLM`` and the registered subclasses that override them):

- ``_achat_completion(messages, timeout)`` → an ``openai`` ``ChatCompletion``;
- ``_achat_completion_stream(messages, timeout)`` → the full text, each piece handed to MetaGPT's
  ``log_llm_stream`` as it arrives (the default path: ``llm.stream`` is true). Pieces stream from a
  kernel running in the caller's loop; through the process-default kernel (another thread) the
  whole answer arrives as one piece;
- ``_achat_completion_function(messages, timeout, **chat_configs)`` → a ``ChatCompletion`` whose
  message carries the model's ``tool_calls`` (``aask_code`` parses them as MetaGPT does).

Patching the primitives rather than ``BaseLLM.aask`` matters: ``OpenAILLM`` overrides
``acompletion_text`` and ``aask_code``. Token counts come from the kernel and go through the
provider's own ``_update_costs``, so MetaGPT's cost manager keeps working (without tiktoken).
Providers of the other API types (Anthropic, Gemini, Ollama, ...) return other wire types; while
patched, the provider registry hands out ``KernelLLM`` in their place: an OpenAI-family provider
without a client whose primitives always call the kernel.

The request: the provider's model name (``model=``, routed by the kernel), ``llm.max_token`` as
``max_tokens``, ``llm.temperature``, and the provider's timeout as the syscall's deadline; of the
function-calling keywords the kernel honours ``tools``, ``tool_choice``, ``temperature``,
``max_tokens``, ``stop`` and ``response_format`` (others, like ``n``, are dropped).
"""

from __future__ import annotations

import functools
import importlib
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from aios import sdk
from aios.adapters.base import PatchTarget
from aios.errors import AIOSError, InvalidRequestError
from aios.types import LLMResult, Message

#: The agent identity of LLM calls made outside any role (and outside ``aios.sdk.agent(...)``).
DEFAULT_AGENT = "metagpt"
#: ``chat_configs`` keys of the function-calling path that reach the kernel.
CHAT_OPTIONS = ("tools", "tool_choice", "temperature", "max_tokens", "stop", "response_format")
#: MetaGPT's "use the configured timeout" value (``metagpt.const.USE_CONFIG_TIMEOUT``).
USE_CONFIG_TIMEOUT = 0

Primitive = Callable[..., Coroutine[Any, Any, Any]]


def _module(name: str) -> Any:
    # The framework is absent where the adapter is type-checked; treat its modules as Any.
    return importlib.import_module(name)


def request_params(llm: Any, timeout: Any, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``sdk.llm_chat`` keywords for a call of MetaGPT provider ``llm``."""
    config = llm.config
    max_tokens = config.max_token
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise InvalidRequestError(
            f"MetaGPT's llm.max_token must be a positive integer, got {max_tokens!r}", field="llm.max_token"
        )
    temperature = config.temperature
    if not isinstance(temperature, int | float) or isinstance(temperature, bool):
        raise InvalidRequestError(
            f"MetaGPT's llm.temperature must be a number, got {temperature!r}", field="llm.temperature"
        )
    params: dict[str, Any] = {
        "model": llm.model or config.model,
        "temperature": float(temperature),
        "max_tokens": max_tokens,
        "timeout": float(llm.get_timeout(timeout)),
        "agent": sdk.current_agent(default=DEFAULT_AGENT),
    }
    for key in CHAT_OPTIONS:
        value = (options or {}).get(key)
        if value is not None:
            params[key] = [value] if key == "stop" and isinstance(value, str) else value
    return params


def completion_usage(result: LLMResult) -> Any:
    """The kernel's token counts as an ``openai`` ``CompletionUsage``."""
    usage = result.usage
    return _module("openai.types").CompletionUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def chat_completion(result: LLMResult, model: str | None) -> Any:
    """An ``LLMResult`` as the ``ChatCompletion`` the OpenAI API would have returned."""
    message: dict[str, Any] = {
        "role": "assistant",
        # OpenAI sends null content with tool calls; MetaGPT's parsers rely on that.
        "content": result.text if result.text or not result.tool_calls else None,
    }
    if result.tool_calls:
        message["tool_calls"] = [call.to_openai() for call in result.tool_calls]
    return _module("openai.types.chat").ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-aios-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": result.model or model or "",
            "choices": [
                {"index": 0, "finish_reason": result.finish_reason, "message": message, "logprobs": None}
            ],
            "usage": completion_usage(result).model_dump(),
        }
    )


def _kernel_in_this_loop() -> bool:
    # sdk.llm_stream needs a kernel on the caller's loop; the process-default one lives elsewhere.
    from aios.kernel import current_kernel

    kernel = current_kernel.get()
    return kernel is not None and kernel.running


async def _stream(
    messages: list[Message], params: dict[str, Any], on_piece: Callable[[str], Any]
) -> LLMResult:
    if not _kernel_in_this_loop():
        result = await sdk.llm_chat(messages, **params)
        if result.text:
            on_piece(result.text)
        return result
    stream = await sdk.llm_stream(messages, **params)
    async for piece in stream:
        on_piece(piece)
    if stream.result is None:
        raise AIOSError("the LLM stream ended without a result", agent=params["agent"])
    return stream.result


async def achat_completion(llm: Any, messages: list[Message], timeout: Any = USE_CONFIG_TIMEOUT) -> Any:
    """``_achat_completion`` as a kernel LLM syscall: returns a ``ChatCompletion``."""
    params = request_params(llm, timeout)
    result = await sdk.llm_chat(list(messages), **params)
    rsp = chat_completion(result, params["model"])
    llm._update_costs(rsp.usage)
    return rsp


async def achat_completion_stream(
    llm: Any, messages: list[Message], timeout: Any = USE_CONFIG_TIMEOUT
) -> str:
    """``_achat_completion_stream`` as a kernel LLM syscall: logs each piece, returns the text."""
    log_llm_stream = _module("metagpt.logs").log_llm_stream
    params = request_params(llm, timeout)
    result = await _stream(list(messages), params, log_llm_stream)
    log_llm_stream("\n")
    llm._update_costs(completion_usage(result))
    return result.text


async def achat_completion_function(
    llm: Any, messages: Any, timeout: Any = USE_CONFIG_TIMEOUT, **chat_configs: Any
) -> Any:
    """``_achat_completion_function`` as a kernel LLM syscall: a ``ChatCompletion`` with tool calls."""
    formatted = llm.format_msg(messages)
    params = request_params(llm, timeout, chat_configs)
    result = await sdk.llm_chat(formatted, **params)
    rsp = chat_completion(result, params["model"])
    llm._update_costs(rsp.usage)
    return rsp


PRIMITIVES: Mapping[str, Primitive] = {
    "_achat_completion": achat_completion,
    "_achat_completion_stream": achat_completion_stream,
    "_achat_completion_function": achat_completion_function,
}


def _replacement(impl: Primitive) -> Callable[[Any], Primitive]:
    def wrap(original: Any) -> Primitive:
        @functools.wraps(original)
        async def primitive(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await impl(self, *args, **kwargs)

        return primitive

    return wrap


def _init_client(self: Any) -> None:
    """No client: every call of a ``KernelLLM`` goes to the kernel."""
    self.model = self.config.model
    self.pricing_plan = self.config.pricing_plan or self.model
    self.aclient = None


def kernel_llm_class() -> type:
    """``KernelLLM``: an ``OpenAILLM`` without a client whose primitives always call the kernel."""
    openai_llm = _module("metagpt.provider.openai_api").OpenAILLM
    namespace: dict[str, Any] = {
        "__doc__": "A MetaGPT provider served by the AIOS kernel (stands in for non-OpenAI API types).",
        "__module__": __name__,
        "_init_client": _init_client,
        **PRIMITIVES,
    }
    return type("KernelLLM", (openai_llm,), namespace)


def _provider_lookup(openai_llm: type, kernel_llm: type) -> Callable[[Any], Any]:
    def wrap(original: Any) -> Any:
        @functools.wraps(original)
        def get_provider(self: Any, enum: Any) -> Any:
            provider = original(self, enum)
            # The OpenAI family keeps its own class: its primitives are patched in place.
            return provider if issubclass(provider, openai_llm) else kernel_llm

        return get_provider

    return wrap


def provider_targets() -> list[PatchTarget]:
    """The primitives of every registered OpenAI-family provider, and the registry's lookup."""
    registry = _module("metagpt.provider.llm_provider_registry")
    openai_llm: type = _module("metagpt.provider.openai_api").OpenAILLM
    classes = dict.fromkeys(
        cls
        for cls in (openai_llm, *registry.LLM_REGISTRY.providers.values())
        if isinstance(cls, type) and issubclass(cls, openai_llm)
    )
    targets = [
        PatchTarget(f"{cls.__module__}.{cls.__qualname__}.{name}", _replacement(impl))
        for cls in classes
        for name, impl in PRIMITIVES.items()
        if name in vars(cls)
    ]
    targets.append(
        PatchTarget(
            "metagpt.provider.llm_provider_registry.LLMProviderRegistry.get_provider",
            _provider_lookup(openai_llm, kernel_llm_class()),
        )
    )
    return targets
