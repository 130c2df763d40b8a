"""JSON schemas of syscall arguments, read from the handlers' signatures.

The same schema is published in ``/openapi.json`` and enforced on each request (``validate``),
so what the document promises and what the server accepts cannot drift apart: malformed
arguments are refused with a 400 naming the argument before any manager sees them.
"""

from __future__ import annotations

import builtins
import collections.abc
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from aios.errors import InvalidRequestError
from aios.wire import BYTES_KEY, decode

Schema = dict[str, Any]

BYTES_SCHEMA: Schema = {
    "type": "object",
    "description": "bytes, as base64",
    "properties": {BYTES_KEY: {"type": "string", "format": "byte"}},
    "required": [BYTES_KEY],
    "additionalProperties": False,
}

# Modules whose names the handlers' (string) annotations use.
_ANNOTATION_MODULES = (
    "aios.managers.memory",
    "aios.managers.storage",
    "aios.managers.tools",
    "aios.managers.access",
    "aios.services",
)
_SCALARS: Mapping[Any, str] = types.MappingProxyType(
    {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
)


def _namespace() -> dict[str, Any]:
    ns: dict[str, Any] = dict(vars(builtins))
    ns.update({k: getattr(typing, k) for k in typing.__all__})
    ns.update({k: getattr(collections.abc, k) for k in collections.abc.__all__})
    for name in _ANNOTATION_MODULES:
        ns.update(vars(importlib.import_module(name)))
    return ns


def annotation_schema(ann: Any, ns: Mapping[str, Any] | None = None) -> Schema:
    """The JSON schema of a parameter annotation (a type or its string); ``{}`` when unknown."""
    if ann is inspect.Parameter.empty:
        return {}
    if isinstance(ann, str):
        try:
            # Our own source's annotations, evaluated as typing.get_type_hints would.
            ann = eval(ann, dict(ns if ns is not None else _namespace()))
        except Exception:
            return {}
    if ann is None:
        ann = type(None)
    if ann in _SCALARS:
        return {"type": _SCALARS[ann]}
    if ann is bytes:
        return dict(BYTES_SCHEMA)
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (typing.Union, types.UnionType):
        parts = [annotation_schema(a, ns) for a in args]
        if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
            return {"type": [p["type"] for p in parts]}
        return {"anyOf": parts}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set, frozenset, collections.abc.Iterable, collections.abc.Sequence):
        item = args[0] if args else Any
        return {"type": "array", "items": annotation_schema(item, ns)}
    if origin in (dict, collections.abc.Mapping) and args and args[0] is str:
        return {"type": "object", "additionalProperties": annotation_schema(args[1], ns)}
    if ann in (list, tuple):
        return {"type": "array"}
    if ann is dict:
        return {"type": "object"}
    return {}


def arg_schema(handler: Callable[..., Any]) -> Schema:
    """The object schema of a syscall handler's arguments (all but the calling ``agent``)."""
    ns = _namespace()
    props: dict[str, Schema] = {}
    required: list[str] = []
    for name, p in inspect.signature(handler).parameters.items():
        if name == "agent" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        schema = {"type": ["string", "null"]} if name == "owner" else annotation_schema(p.annotation, ns)
        if p.default is p.empty:
            required.append(name)
        props[name] = schema
    out: Schema = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def convert_args(schema: Schema, args: dict[str, Any]) -> dict[str, Any]:
    """Validated ``args`` as handlers take them: integral floats as ints, ``$bytes`` as bytes."""
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for key, value in args.items():
        kind = props.get(key, {}).get("type")
        kinds = [kind] if isinstance(kind, str) else list(kind or [])
        if isinstance(value, float) and value.is_integer() and "integer" in kinds and "number" not in kinds:
            value = int(value)
        try:
            out[key] = decode(value, rebuild=False)
        except InvalidRequestError as exc:
            raise InvalidRequestError(f"args.{key}: {exc.message}", field=f"args.{key}") from None
    return out
