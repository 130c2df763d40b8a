"""LangChain's chat types to the kernel's OpenAI-shaped request, and the kernel's result back.

Inbound: LangChain messages become OpenAI message dicts through LangChain's own
``convert_to_openai_messages`` (tool calls, tool results and content parts included); bound tools
(``kwargs["tools"]``, in any shape ``convert_to_openai_tool`` reads) and ``tool_choice`` (OpenAI,
Anthropic or LangChain spelling) become the kernel's function tools; model name, temperature,
token limit and stop words come from the model's standard ``_get_ls_params``, which every chat
model provides and which already folds in per-call overrides.

Outbound: an ``LLMResult`` becomes a ``ChatResult`` whose ``AIMessage`` carries ``tool_calls``
(``invalid_tool_calls`` when the model wrote arguments that are not a JSON object),
``usage_metadata`` and ``response_metadata``; or a run of ``ChatGenerationChunk``s whose sum is
that same message (text pieces, one ``tool_call_chunk`` per call, a last chunk with the usage).

LangChain is imported inside the functions (through ``importlib``, so this module type-checks
where LangChain is absent): importing the adapter must not import the framework.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from aios import sdk
from aios.errors import InvalidRequestError
from aios.types import LLMResult, Message

#: The identity used when neither a ``with aios.sdk.agent(...)`` scope nor the model names one.
DEFAULT_AGENT = "langchain"

# Word-sized pieces for a result that arrived whole; the alternation covers every character, so
# the pieces always join back to the text.
_PIECES = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One chat-model call, translated: what goes to ``sdk.llm_chat`` and who asks."""

    messages: list[Message]
    agent: str
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None

    @property
    def response_format(self) -> Mapping[str, Any] | None:
        """The requested response format, if any."""
        fmt = self.params.get("response_format")
        return fmt if isinstance(fmt, Mapping) else None


def build_call(
    model: Any, messages: Sequence[Any], stop: list[str] | None, kwargs: Mapping[str, Any]
) -> ChatCall:
    """Translate ``model._generate(messages, stop, **kwargs)`` into kernel terms."""
    ls = model._get_ls_params(stop=stop, **kwargs)
    params: dict[str, Any] = {}
    name = ls.get("ls_model_name")
    if isinstance(name, str) and name:
        params["model"] = name
    temperature = ls.get("ls_temperature")
    if temperature is not None:
        params["temperature"] = temperature
    max_tokens = ls.get("ls_max_tokens")
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    stops = stop if stop is not None else ls.get("ls_stop")
    if isinstance(stops, str):
        stops = [stops]
    if stops:
        params["stop"] = list(stops)
    tools = kernel_tools(kwargs.get("tools"))
    if tools:
        params["tools"] = tools
    choice = kernel_tool_choice(kwargs.get("tool_choice"))
    if choice is not None:
        params["tool_choice"] = choice
    fmt = kernel_response_format(kwargs.get("response_format"))
    if fmt is not None:
        params["response_format"] = fmt
    own_name = getattr(model, "name", None)
    agent = sdk.current_agent(default=own_name if isinstance(own_name, str) and own_name else DEFAULT_AGENT)
    return ChatCall(kernel_messages(messages), agent, params, _timeout_of(model))


def _timeout_of(model: Any) -> float | None:
    # ChatOpenAI and most provider models spell the per-request limit one of these two ways.
    for attr in ("request_timeout", "timeout"):
        value = getattr(model, attr, None)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def kernel_messages(messages: Sequence[Any]) -> list[Message]:
    """LangChain messages as OpenAI chat dicts (raises ``InvalidRequestError`` naming ``messages``)."""
    utils = import_module("langchain_core.messages.utils")
    try:
        converted: list[Message] = utils.convert_to_openai_messages(list(messages), text_format="string")
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise InvalidRequestError(
            f"messages cannot be converted to the OpenAI chat shape: {exc}", field="messages"
        ) from None
    return converted


def kernel_tools(tools: object) -> list[dict[str, Any]] | None:
    """Bound tools as OpenAI function tools; raises ``InvalidRequestError`` naming ``tools[i]``."""
    if tools is None:
        return None
    if not isinstance(tools, list | tuple):
        raise InvalidRequestError(f"tools must be a list, got {type(tools).__name__}", field="tools")
    fc = import_module("langchain_core.utils.function_calling")
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        try:
            spec = fc.convert_to_openai_tool(tool)
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise InvalidRequestError(
                f"tools[{i}] is not a tool LangChain can describe: {exc}", field=f"tools[{i}]"
            ) from None
        if spec.get("type") != "function" or not isinstance(spec.get("function"), Mapping):
            raise InvalidRequestError(
                f"tools[{i}] is a provider built-in tool ({spec.get('type')!r}); "
                "the kernel runs function tools only",
                field=f"tools[{i}]",
            )
        out.append({"type": "function", "function": dict(spec["function"])})
    return out


def kernel_tool_choice(choice: object) -> str | dict[str, Any] | None:
    """``tool_choice`` in the kernel's spelling: ``auto``/``none``/``required`` or a named function."""
    if choice is None or choice is False:
        return None
    if choice is True:
        return "required"
    if isinstance(choice, str):
        if choice in ("auto", "none", "required"):
            return choice
        if choice == "any":
            return "required"
        return _named(choice)
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        fn = choice.get("function")
        if kind == "function" and isinstance(fn, Mapping) and isinstance(fn.get("name"), str):
            return _named(fn["name"])
        if kind in ("function", "tool") and isinstance(choice.get("name"), str):
            return _named(choice["name"])  # Responses API / Anthropic spelling
        if kind == "any":
            return "required"
        if kind in ("auto", "none"):
            return str(kind)
    raise InvalidRequestError(
        f"tool_choice {choice!r} is not 'auto', 'none', 'required'/'any', a tool name or a function dict",
        field="tool_choice",
    )


def kernel_response_format(fmt: object) -> dict[str, Any] | None:
    """``response_format`` as an OpenAI dict; a schema (pydantic class, JSON schema) becomes json_schema."""
    if fmt is None:
        return None
    if isinstance(fmt, Mapping) and fmt.get("type") in ("text", "json_object", "json_schema"):
        return dict(fmt)
    # ChatOpenAI passes a pydantic class through for its SDK's parse(); other models a JSON schema.
    fc = import_module("langchain_core.utils.function_calling")
    try:
        fn = fc.convert_to_openai_function(fmt)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise InvalidRequestError(
            f"response_format is neither an OpenAI response format nor a schema: {exc}",
            field="response_format",
        ) from None
    spec: dict[str, Any] = {"name": fn["name"], "schema": fn.get("parameters", {})}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"type": "json_schema", "json_schema": spec}


def _named(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


# -- results ------------------------------------------------------------------------------------


def _usage(result: LLMResult) -> dict[str, int]:
    u = result.usage
    return {
        "input_tokens": u.prompt_tokens,
        "output_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def _metadata(result: LLMResult) -> dict[str, Any]:
    return {"finish_reason": result.finish_reason, "model_name": result.model, "aios_backend": result.backend}


def _tool_calls(result: LLMResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for tc in result.tool_calls:
        try:
            args = tc.parsed_arguments()
        except InvalidRequestError as exc:
            # LangChain's convention for a model's malformed call: keep it, flagged, for the agent.
            invalid.append(
                {
                    "type": "invalid_tool_call",
                    "name": tc.name,
                    "args": tc.arguments,
                    "id": tc.id,
                    "error": str(exc),
                }
            )
        else:
            valid.append({"type": "tool_call", "name": tc.name, "args": args, "id": tc.id})
    return valid, invalid


def _extra_kwargs(result: LLMResult, response_format: Mapping[str, Any] | None) -> dict[str, Any]:
    # ChatOpenAI's structured-output parser reads the decoded object from additional_kwargs["parsed"].
    if response_format is None or response_format.get("type") != "json_schema" or result.tool_calls:
        return {}
    try:
        parsed = json.loads(result.text)
    except json.JSONDecodeError:
        return {}
    return {"parsed": parsed} if isinstance(parsed, dict) else {}


def chat_result(result: LLMResult, response_format: Mapping[str, Any] | None = None) -> Any:
    """The kernel's ``LLMResult`` as a LangChain ``ChatResult`` with one ``AIMessage``."""
    messages = import_module("langchain_core.messages")
    outputs = import_module("langchain_core.outputs")
    valid, invalid = _tool_calls(result)
    message = messages.AIMessage(
        content=result.text,
        tool_calls=valid,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(result),
        response_metadata=_metadata(result),
        additional_kwargs=_extra_kwargs(result, response_format),
    )
    generation = outputs.ChatGeneration(
        message=message, generation_info={"finish_reason": result.finish_reason}
    )
    u = result.usage
    token_usage = {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }
    return outputs.ChatResult(
        generations=[generation], llm_output={"token_usage": token_usage, "model_name": result.model}
    )


def text_chunk(piece: str) -> Any:
    """One streamed piece of answer text as a ``ChatGenerationChunk``."""
    messages = import_module("langchain_core.messages")
    outputs = import_module("langchain_core.outputs")
    return outputs.ChatGenerationChunk(message=messages.AIMessageChunk(content=piece))


def closing_chunks(result: LLMResult, response_format: Mapping[str, Any] | None = None) -> list[Any]:
    """The chunks after the text: one ``tool_call_chunk`` per call, then the last one with usage."""
    messages = import_module("langchain_core.messages")
    outputs = import_module("langchain_core.outputs")
    chunks = [
        outputs.ChatGenerationChunk(
            message=messages.AIMessageChunk(
                content="",
                tool_call_chunks=[{"name": tc.name, "args": tc.arguments, "id": tc.id, "index": i}],
            )
        )
        for i, tc in enumerate(result.tool_calls)
    ]
    last = messages.AIMessageChunk(
        content="",
        usage_metadata=_usage(result),
        additional_kwargs=_extra_kwargs(result, response_format),
        chunk_position="last",
    )
    # LangChain folds generation_info into each chunk's response_metadata; set it on the last
    # chunk only, since adding chunks concatenates string metadata found on both sides.
    chunks.append(outputs.ChatGenerationChunk(message=last, generation_info=_metadata(result)))
    return chunks


def result_chunks(result: LLMResult, response_format: Mapping[str, Any] | None = None) -> list[Any]:
    """A whole result as stream chunks: word-sized text pieces, then ``closing_chunks``."""
    return [text_chunk(p) for p in _PIECES.findall(result.text)] + closing_chunks(result, response_format)
