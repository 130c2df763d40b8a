"""What the embedded model is asked, and how its answer is read: messages, tools, output grammars.

Small local models have no native tool-call format, so tools are described in the system message
and a call is a JSON object ``{"name": ..., "arguments": {...}}``. When a call is required the
output is constrained by a JSON-schema grammar, so it is always well-formed; otherwise it is
generated freely and recognised afterwards. Nothing here touches llama.cpp: it is plain data.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aios.errors import InvalidRequestError
from aios.types import LLMRequest, Message, ToolCall, message_text, tool_names

#: "text": free text; "json": JSON text (response_format); "tool": a call is required (grammar);
#: "auto": free text that is read as a call if it is one.
OutputMode = Literal["text", "json", "tool", "auto"]

TOOL_INSTRUCTIONS = (
    "You can call these functions:\n{specs}\n"
    'To call a function, answer with only a JSON object {{"name": <function name>, '
    '"arguments": <object>}} and nothing else.'
)


@dataclass(slots=True, frozen=True)
class OutputPlan:
    """How one request's output is produced and read."""

    mode: OutputMode
    #: JSON schema the output must match (grammar-constrained), or None for free text.
    schema: dict[str, Any] | None
    #: Names of the functions the output may call.
    tools: tuple[str, ...] = ()


def plan_output(request: LLMRequest) -> OutputPlan:
    """Decide, from tools, tool_choice and response_format, how the output is constrained."""
    tools = request.tools or []
    choice = request.tool_choice
    if tools and choice != "none":
        names = tool_names(tools)
        limit = string_budget(request.max_tokens)
        if isinstance(choice, Mapping):
            forced = choice["function"]["name"]
            return OutputPlan("tool", tool_call_schema(tools, [forced], limit), (forced,))
        if choice == "required":
            return OutputPlan("tool", tool_call_schema(tools, names, limit), tuple(names))
        return OutputPlan("auto", None, tuple(names))
    fmt = request.response_format
    if fmt is not None and fmt.get("type") == "json_object":
        return OutputPlan("json", {"type": "object"})
    if fmt is not None and fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequestError(
                "response_format json_schema needs {'json_schema': {'schema': {...}}}",
                field="response_format",
            )
        return OutputPlan("json", dict(schema))
    return OutputPlan("text", None)


def tool_call_schema(
    tools: Sequence[Mapping[str, Any]], names: Sequence[str], limit: int = 1024
) -> dict[str, Any]:
    """The JSON schema of a call to one of ``names``: {"name": const, "arguments": its parameters}.

    Unbounded strings get ``maxLength=limit`` (see ``string_budget``).
    """
    alternatives = []
    for tool in tools:
        fn = tool["function"]
        if fn["name"] not in names:
            continue
        params = bounded_strings(fn.get("parameters") or {"type": "object"}, limit)
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    return alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}


#: JSON syntax, the name and the keys of a small call, in tokens (measured: ~26 for a whole call).
CALL_OVERHEAD_TOKENS = 32


def string_budget(max_tokens: int) -> int:
    """Characters a JSON string of a forced call may take so the call closes within ``max_tokens``.

    A small model can loop inside a string until ``max_tokens`` cuts the call mid-JSON. A token
    is at least one character, so strings bounded to the tokens left after the call's overhead
    always let the grammar close the object in time.
    """
    return max(8, min(4096, max_tokens - CALL_OVERHEAD_TOKENS))


def bounded_strings(schema: Any, limit: int) -> Any:
    """A copy of ``schema`` where every string without a ``maxLength`` gets ``limit``."""
    if isinstance(schema, Mapping):
        out = {k: bounded_strings(v, limit) for k, v in schema.items()}
        types = out.get("type")
        is_string = types == "string" or (isinstance(types, list) and "string" in types)
        if is_string and "maxLength" not in out and "enum" not in out and "const" not in out:
            out["maxLength"] = limit
        return out
    if isinstance(schema, list):
        return [bounded_strings(v, limit) for v in schema]
    return schema


def chat_messages(request: LLMRequest, plan: OutputPlan) -> list[dict[str, str]]:
    """The request's messages as plain role/content strings a chat template can render."""
    out = [_plain(msg) for msg in request.messages]
    if plan.mode in ("tool", "auto"):
        specs = [_tool_spec(t) for t in request.tools or [] if t["function"]["name"] in plan.tools]
        note = TOOL_INSTRUCTIONS.format(specs="\n".join(json.dumps(s) for s in specs))
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{note}"}
        else:
            out.insert(0, {"role": "system", "content": note})
    return out


def read_tool_call(text: str, names: Sequence[str]) -> ToolCall | None:
    """The call ``text`` makes, if it is exactly a JSON call of one of ``names``; else None."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict) or set(value) != {"name", "arguments"}:
        return None
    name, arguments = value["name"], value["arguments"]
    if name not in names or not isinstance(arguments, dict):
        return None
    return ToolCall(id=new_call_id(), name=name, arguments=json.dumps(arguments, ensure_ascii=False))


def new_call_id() -> str:
    """A fresh OpenAI-style tool call id."""
    return f"call_{secrets.token_hex(12)}"


def _plain(msg: Message) -> dict[str, str]:
    role = "system" if msg["role"] == "developer" else str(msg["role"])
    content = message_text(msg)
    calls = msg.get("tool_calls") or []
    # Earlier calls are shown to the model in the same shape it is asked to produce.
    shown = [
        json.dumps({"name": c["function"]["name"], "arguments": _loads(c["function"].get("arguments"))})
        for c in calls
        if isinstance(c, Mapping) and isinstance(c.get("function"), Mapping)
    ]
    return {"role": role, "content": "\n".join([content, *shown] if content else shown)}


def _loads(arguments: object) -> object:
    if not isinstance(arguments, str):
        return arguments if arguments is not None else {}
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def _tool_spec(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    spec: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        spec["description"] = fn["description"]
    spec["parameters"] = fn.get("parameters") or {"type": "object"}
    return spec
