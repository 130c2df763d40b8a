"""Tool parameter schemas: built from a function's type hints and docstring, and checked.

``signature_schema`` runs when a tool is defined, so an unsupported annotation fails then, naming
the parameter; ``validate_value`` runs on every call, before the tool, and names the offending
argument by its path (``arguments.rows[1][0]``). The validator covers the JSON-schema subset that
the builder emits (a dependency on ``jsonschema`` would buy little and cost the messages).
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args, get_origin

from aios.errors import ConfigError, InvalidRequestError

Schema = dict[str, Any]
Converter = Callable[[Any], Any]

_SCALARS: Mapping[type, str] = types.MappingProxyType(
    {str: "string", int: "integer", float: "number", bool: "boolean"}
)
_PHRASES: Mapping[str, str] = types.MappingProxyType(
    {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean",
        "array": "an array",
        "object": "an object",
        "null": "null",
    }
)
_SECTION = re.compile(r"^(\w+(?: \w+)?):\s*$")
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def signature_schema(
    fn: Callable[..., Any], tool_name: str, arg_docs: dict[str, str]
) -> tuple[Schema, Callable[[dict[str, Any]], dict[str, Any]] | None]:
    """The object schema of ``fn``'s parameters and a converter of validated values (None if none)."""
    try:
        sig = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise ConfigError(
            f"tool {tool_name!r}: cannot read its signature: {exc}", field="parameters"
        ) from None
    props: dict[str, Schema] = {}
    required: list[str] = []
    converters: dict[str, Converter] = {}
    for p in sig.parameters.values():
        where = f"parameters.{p.name}"
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            raise ConfigError(
                f"tool {tool_name!r}: parameter {p.name!r} is {p.kind.description}; "
                "tools take named parameters",
                field=where,
            )
        if p.name not in hints:
            raise ConfigError(f"tool {tool_name!r}: parameter {p.name!r} has no type annotation", field=where)
        schema, conv = _annotation_schema(hints[p.name], tool_name, p.name)
        if p.name in arg_docs:
            schema["description"] = arg_docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
        else:
            default = p.default.value if isinstance(p.default, enum.Enum) else p.default
            try:
                validate_value(default, schema, where)
            except InvalidRequestError:
                raise ConfigError(
                    f"tool {tool_name!r}: parameter {p.name!r} has default {p.default!r} that its "
                    f"annotation does not allow",
                    field=where,
                ) from None
            schema["default"] = default
        props[p.name] = schema
        if conv is not None:
            converters[p.name] = conv
    unknown = sorted(set(arg_docs) - set(props))
    if unknown:
        raise ConfigError(
            f"tool {tool_name!r}: the docstring documents {unknown[0]!r}, which is not a parameter",
            field=f"parameters.{unknown[0]}",
        )
    parameters: Schema = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    if not converters:
        return parameters, None

    def convert(args: dict[str, Any]) -> dict[str, Any]:
        return {k: converters[k](v) if k in converters else v for k, v in args.items()}

    return parameters, convert


def _annotation_schema(ann: Any, tool_name: str, param: str) -> tuple[Schema, Converter | None]:
    if ann in _SCALARS:
        conv: Converter | None = float if ann is float else (_to_int if ann is int else None)
        return {"type": _SCALARS[ann]}, conv
    origin, args = get_origin(ann), get_args(ann)
    if origin is Literal and all(isinstance(v, str | int | float | bool) for v in args):
        kinds = {_SCALARS[type(v)] for v in args}
        schema: Schema = {"enum": list(args)}
        return ({"type": kinds.pop(), **schema} if len(kinds) == 1 else schema), None
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        inner, conv = _annotation_schema(next(a for a in args if a is not type(None)), tool_name, param)
        return _nullable(inner), (None if conv is None else _skip_none(conv))
    if origin is list and len(args) == 1:
        item, conv = _annotation_schema(args[0], tool_name, param)
        return {"type": "array", "items": item}, (None if conv is None else _each(conv))
    if origin is dict and len(args) == 2 and args[0] is str:
        value, conv = _annotation_schema(args[1], tool_name, param)
        return {"type": "object", "additionalProperties": value}, (
            None if conv is None else _each_value(conv)
        )
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        values = [m.value for m in ann]
        kinds = {_SCALARS.get(type(v), "") for v in values}
        if values and "" not in kinds:
            enum_schema: Schema = {"enum": values}
            return ({"type": kinds.pop(), **enum_schema} if len(kinds) == 1 else enum_schema), ann
    raise ConfigError(
        f"tool {tool_name!r}: parameter {param!r} has unsupported type {ann!r} (use str, int, float, bool, "
        "list[X], dict[str, X], Literal[...], an Enum, or X | None)",
        field=f"parameters.{param}",
    )


def _nullable(inner: Schema) -> Schema:
    t = inner.get("type")
    if isinstance(t, str):
        out = {**inner, "type": [t, "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [inner, {"type": "null"}]}


def _to_int(v: Any) -> Any:
    return int(v) if isinstance(v, float) else v


def _skip_none(conv: Converter) -> Converter:
    return lambda v: None if v is None else conv(v)


def _each(conv: Converter) -> Converter:
    return lambda v: [conv(x) for x in v]


def _each_value(conv: Converter) -> Converter:
    return lambda v: {k: conv(x) for k, x in v.items()}


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph (the description) and the ``Args:`` entries of a Google-style docstring."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line.strip()):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    in_args, current, indent0 = False, None, None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if _SECTION.match(stripped) and (indent0 is None or indent < indent0):
            in_args = stripped[:-1].strip() in ("Args", "Arguments", "Parameters")
            current, indent0 = None, None
            continue
        if not in_args or not stripped:
            continue
        m = _ARG_LINE.match(stripped)
        if m and (indent0 is None or indent <= indent0):
            indent0, current = indent, m.group(1)
            args[current] = m.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {stripped}".strip()
    return " ".join(summary), args


def parse_arguments(tool_name: str, arguments: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Arguments as a dict: JSON text is decoded; anything but an object is an invalid request."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(
                f"arguments of tool {tool_name!r} are not valid JSON: {exc}", field="arguments"
            ) from None
    if not isinstance(arguments, Mapping):
        raise InvalidRequestError(
            f"arguments of tool {tool_name!r} must be a JSON object, got {_show(arguments)}",
            field="arguments",
        )
    return dict(arguments)


def validate_value(value: Any, schema: Schema, path: str) -> None:
    """Check ``value`` against a JSON-schema subset; ``InvalidRequestError(field=path...)`` if not.

    Supported keywords: type (one or a list), enum, anyOf, items, properties, required,
    additionalProperties (bool or schema). Others are ignored.
    """
    if "anyOf" in schema:
        for sub in schema["anyOf"]:
            try:
                validate_value(value, sub, path)
                return
            except InvalidRequestError:
                continue
        raise InvalidRequestError(f"{path} must be {_describe(schema)}, got {_show(value)}", field=path)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is_type(value, k) for k in kinds):
            raise InvalidRequestError(f"{path} must be {_describe(schema)}, got {_show(value)}", field=path)
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        choices = ", ".join(_show(e) for e in schema["enum"])
        raise InvalidRequestError(f"{path} must be one of {choices}, got {_show(value)}", field=path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            validate_value(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        _validate_object(value, schema, path)


def _validate_object(value: dict[str, Any], schema: Schema, path: str) -> None:
    props: dict[str, Schema] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            raise InvalidRequestError(f"{path}.{key} is required", field=f"{path}.{key}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in props:
            validate_value(item, props[key], where)
        elif extra is False:
            allowed = ", ".join(props) or "none"
            raise InvalidRequestError(f"{where} is not a known parameter (known: {allowed})", field=where)
        elif isinstance(extra, dict):
            validate_value(item, extra, where)


def _is_type(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    return checks.get(kind, lambda v: True)(value)


def _same(a: Any, b: Any) -> bool:
    # JSON says true != 1, Python says True == 1.
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _describe(schema: Schema) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    return " or ".join(_PHRASES.get(k, k) for k in kinds) or "valid"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
