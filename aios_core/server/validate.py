"""Request bodies checked against the very schemas ``/openapi.json`` publishes.

A small JSON-schema validator for the keywords the server's document uses: ``$ref`` (to
``#/components/schemas``), ``type``, ``enum``, ``const``, ``anyOf``, ``allOf``, ``properties``,
``required``, ``additionalProperties``, ``items``, ``minItems``/``maxItems``,
``minLength``/``maxLength``, ``minimum``/``maximum``/``exclusiveMinimum``. A keyword it does not
know is ignored, so the document must not promise more than these. Errors are
``InvalidRequestError`` whose ``field`` is the path of the offending value (``messages[0].role``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aios.errors import InvalidRequestError

Schema = Mapping[str, Any]

_REF_PREFIX = "#/components/schemas/"
_PHRASES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_IS: Mapping[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    # JSON Schema counts 2.0 as an integer; the routes turn it into 2.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _same(a: Any, b: Any) -> bool:
    # JSON says true != 1; Python says True == 1.
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Validator:
    """Checks values against schemas that may refer to ``components`` by ``$ref``."""

    def __init__(self, components: Mapping[str, Schema] | None = None):
        self._components = components or {}

    def _resolve(self, schema: Schema) -> Schema:
        while "$ref" in schema:
            ref = schema["$ref"]
            name = ref[len(_REF_PREFIX) :] if ref.startswith(_REF_PREFIX) else ""
            if name not in self._components:
                raise KeyError(f"unresolvable $ref {ref!r}")
            schema = self._components[name]
        return schema

    def describe(self, schema: Schema) -> str:
        """A phrase for what ``schema`` accepts ("a string or null")."""
        schema = self._resolve(schema)
        if "anyOf" in schema:
            return " or ".join(self.describe(s) for s in schema["anyOf"])
        if "const" in schema:
            return _show(schema["const"])
        if "enum" in schema:
            return "one of " + ", ".join(_show(e) for e in schema["enum"])
        kinds = schema.get("type")
        kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
        return " or ".join(_PHRASES.get(k, k) for k in kinds) or "valid"

    def check(self, value: Any, schema: Schema, path: str = "") -> None:
        """Raise ``InvalidRequestError`` naming the first part of ``value`` that ``schema`` refuses."""
        schema = self._resolve(schema)
        where = path or "body"

        def fail(why: str) -> InvalidRequestError:
            return InvalidRequestError(f"{where} {why}", field=where)

        if "anyOf" in schema:
            for sub in schema["anyOf"]:
                try:
                    self.check(value, sub, path)
                    break
                except InvalidRequestError:
                    continue
            else:
                raise fail(f"must be {self.describe(schema)}, got {_show(value)}")
        for sub in schema.get("allOf", ()):
            self.check(value, sub, path)
        kinds = schema.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            if not any(_IS.get(k, lambda v: True)(value) for k in kinds):
                raise fail(f"must be {self.describe({'type': kinds})}, got {_show(value)}")
        if "const" in schema and not _same(value, schema["const"]):
            raise fail(f"must be {_show(schema['const'])}, got {_show(value)}")
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            raise fail(f"must be {self.describe({'enum': schema['enum']})}, got {_show(value)}")
        if isinstance(value, str):
            self._bounds(len(value), schema, "minLength", "maxLength", "characters", fail)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in schema and value < schema["minimum"]:
                raise fail(f"must be at least {schema['minimum']}, got {_show(value)}")
            if "maximum" in schema and value > schema["maximum"]:
                raise fail(f"must be at most {schema['maximum']}, got {_show(value)}")
            if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
                raise fail(f"must be more than {schema['exclusiveMinimum']}, got {_show(value)}")
        elif isinstance(value, list):
            self._bounds(len(value), schema, "minItems", "maxItems", "items", fail)
            if isinstance(schema.get("items"), Mapping):
                for i, item in enumerate(value):
                    self.check(item, schema["items"], f"{path or 'body'}[{i}]")
        elif isinstance(value, dict):
            self._object(value, schema, path)

    @staticmethod
    def _bounds(
        n: int, schema: Schema, low: str, high: str, unit: str, fail: Callable[[str], InvalidRequestError]
    ) -> None:
        if low in schema and n < schema[low]:
            raise fail(f"must have at least {schema[low]} {unit}, has {n}")
        if high in schema and n > schema[high]:
            raise fail(f"must have at most {schema[high]} {unit}, has {n}")

    def _object(self, value: dict[str, Any], schema: Schema, path: str) -> None:
        props: Mapping[str, Schema] = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                where = _join(path, key)
                raise InvalidRequestError(f"{where} is required", field=where)
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                self.check(item, props[key], _join(path, key))
            elif extra is False:
                where = _join(path, key)
                known = ", ".join(props) or "none"
                raise InvalidRequestError(f"{where} is not a known field (known: {known})", field=where)
            elif isinstance(extra, Mapping):
                self.check(item, extra, _join(path, key))
