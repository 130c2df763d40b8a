"""Plain data records shared by every layer: chat messages, tool calls, LLM requests and results.

Messages use the OpenAI chat shape (a list of dicts) because that is what every framework and
every OpenAI-compatible server speaks; ``validate_messages`` checks it once, at the syscall
boundary, so backends can trust what they get.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aios.errors import InvalidRequestError

Message = dict[str, Any]
ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass(slots=True, frozen=True)
class ToolCall:
    """One function call chosen by the model: ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments decoded from JSON (raises ``InvalidRequestError`` if the model wrote bad JSON)."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"tool call {self.name!r} has arguments that are not JSON: {exc}", field="arguments"
            ) from None
        if not isinstance(value, dict):
            raise InvalidRequestError(
                f"tool call {self.name!r} arguments must be a JSON object", field="arguments"
            )
        return value

    def to_openai(self) -> dict[str, Any]:
        """This call in the OpenAI ``tool_calls`` item shape."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(slots=True)
class Usage:
    """Token accounting of one LLM syscall, summed over all its slices."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Prompt tokens evaluated again because a text snapshot was resumed by recomputation.
    recomputed_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, int]:
        """This usage in the OpenAI ``usage`` object shape."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(slots=True)
class LLMResult:
    """What an LLM syscall returns: the text, any tool calls, why it stopped, and token usage."""

    text: str
    finish_reason: FinishReason = "stop"
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    backend: str = ""
    #: The text of each slice, in order; ``"".join(segments) == text`` for a text answer.
    segments: list[str] = field(default_factory=list)

    def to_message(self) -> Message:
        """The assistant message to append to a conversation."""
        msg: Message = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [tc.to_openai() for tc in self.tool_calls]
        return msg


@dataclass(slots=True)
class LLMRequest:
    """The parameters of an LLM call, independent of which backend serves it."""

    messages: list[Message]
    model: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    temperature: float = 0.0
    max_tokens: int = 256
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False
    seed: int | None = None

    def validate(self) -> LLMRequest:
        """Check every field; raise ``InvalidRequestError`` naming the first bad one."""
        validate_messages(self.messages)
        # The model name picks a core from the routing table, so it must be a hashable name.
        if self.model is not None and not isinstance(self.model, str):
            raise InvalidRequestError(
                f"model must be a string or None, got {type(self.model).__name__}", field="model"
            )
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool):
            raise InvalidRequestError("max_tokens must be an integer", field="max_tokens")
        if self.max_tokens <= 0:
            raise InvalidRequestError(
                f"max_tokens must be positive, got {self.max_tokens}", field="max_tokens"
            )
        if not isinstance(self.temperature, int | float) or not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError(
                f"temperature must be a number in [0, 2], got {self.temperature!r}",
                field="temperature",
            )
        if self.stop is not None and (
            not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop)
        ):
            raise InvalidRequestError("stop must be a list of non-empty strings", field="stop")
        if self.tools is not None:
            _validate_tools(self.tools)
        if self.tool_choice is not None:
            _validate_tool_choice(self.tool_choice, self.tools)
        if self.response_format is not None and (
            not isinstance(self.response_format, Mapping)
            or self.response_format.get("type") not in ("text", "json_object", "json_schema")
        ):
            raise InvalidRequestError(
                "response_format must be {'type': 'text'|'json_object'|'json_schema', ...}",
                field="response_format",
            )
        return self


def validate_messages(messages: object) -> None:
    """Check an OpenAI-style message list; raise ``InvalidRequestError`` naming the bad entry."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
        raise InvalidRequestError("messages must be a list of message objects", field="messages")
    if not messages:
        raise InvalidRequestError("messages must not be empty", field="messages")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidRequestError(f"{where} must be an object, got {type(msg).__name__}", field=where)
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidRequestError(
                f"{where}.role must be one of {sorted(ROLES)}, got {role!r}", field=f"{where}.role"
            )
        content = msg.get("content")
        if content is None:
            if role == "assistant" and msg.get("tool_calls"):
                continue
            raise InvalidRequestError(f"{where}.content is missing", field=f"{where}.content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, Mapping) or "type" not in part:
                    raise InvalidRequestError(
                        f"{where}.content[{j}] must be a content part with a 'type'",
                        field=f"{where}.content[{j}]",
                    )
        elif not isinstance(content, str):
            raise InvalidRequestError(
                f"{where}.content must be a string or a list of parts", field=f"{where}.content"
            )


def message_text(msg: Mapping[str, Any]) -> str:
    """The text of a message, joining the text parts of multi-part content."""
    content = msg.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))


def _validate_tools(tools: object) -> None:
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be a list", field="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise InvalidRequestError(
                f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., 'parameters': ...}}}}",
                field=f"tools[{i}]",
            )
        params = fn.get("parameters", {})
        if not isinstance(params, Mapping):
            raise InvalidRequestError(
                f"tools[{i}].function.parameters must be a JSON schema object",
                field=f"tools[{i}].function.parameters",
            )


def tool_names(tools: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """The function names declared in an OpenAI ``tools`` list."""
    return [t["function"]["name"] for t in tools or []]


def _validate_tool_choice(choice: object, tools: list[dict[str, Any]] | None) -> None:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequestError(
                f"tool_choice must be 'auto', 'none', 'required' or a function, got {choice!r}",
                field="tool_choice",
            )
        if choice == "required" and not tools:
            raise InvalidRequestError("tool_choice='required' needs tools", field="tool_choice")
        return
    name = None
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name")
    if not isinstance(name, str):
        raise InvalidRequestError(
            "tool_choice must be {'type': 'function', 'function': {'name': ...}}", field="tool_choice"
        )
    if name not in tool_names(tools):
        raise InvalidRequestError(
            f"tool_choice names {name!r}, which is not among the tools", field="tool_choice"
        )
