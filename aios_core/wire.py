"""The JSON wire format shared by the kernel server and the remote SDK: values, errors, statuses.

Values: JSON types travel as themselves; ``bytes`` as ``{"$bytes": "<base64>"}``; a result
dataclass as its fields plus ``"$type": "<class name>"`` (only the classes in ``RESULT_TYPES``
are rebuilt on the client side, never a class named by the peer); tuples and sets as lists (a
rebuilt dataclass gets its tuples and frozensets back from its field types); non-finite floats
as null. An object whose only key is ``$bytes`` is always bytes, in arguments too.

Errors: ``{"error": {"message", "type", "param", "code", "retryable", "details"}}`` with the
OpenAI ``type`` for the HTTP status (so OpenAI clients raise their usual exceptions), ``code``
the ``AIOSError`` class name, ``param`` the offending field, and ``details`` the error's other
scalar attributes. The remote SDK rebuilds the same error class from ``code``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from aios.errors import (
    AccessDeniedError,
    AIOSError,
    BackendError,
    BackendTimeoutError,
    CancelledError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelInternalError,
    KernelNotRunningError,
    KeyNotFoundError,
    MemoryEntryNotFoundError,
    QueueFullError,
    RateLimitedError,
    StorageError,
    ToolError,
    VersionConflictError,
)
from aios.kernel import ToolLoopResult
from aios.managers.access import AuditRecord, Grant
from aios.managers.agent_memory import MemoryEntry
from aios.managers.memory import MemoryStats, SearchHit
from aios.managers.storage_backend import VersionInfo
from aios.managers.tools import ToolError as ToolFailure
from aios.managers.tools import ToolResult
from aios.types import LLMResult, ToolCall, Usage

BYTES_KEY = "$bytes"
TYPE_KEY = "$type"

#: The result dataclasses that travel by name (the name is the class's ``__name__``).
RESULT_TYPES: Mapping[str, type] = types.MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            AuditRecord,
            Grant,
            LLMResult,
            MemoryEntry,
            MemoryStats,
            SearchHit,
            ToolCall,
            ToolFailure,
            ToolLoopResult,
            ToolResult,
            Usage,
            VersionInfo,
        )
    }
)


class AuthenticationError(AccessDeniedError):
    """The request carried no bearer token, or one the server does not know (HTTP 401)."""


class PayloadTooLargeError(InvalidRequestError):
    """The request body is larger than the server accepts (HTTP 413)."""


class NotFoundError(InvalidRequestError):
    """The URL names no route, syscall or tool run of this server (HTTP 404)."""


# -- values --------------------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """``value`` as JSON-able data (see the module doc for bytes, dataclasses and sets)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        out[TYPE_KEY] = type(value).__name__
        return out
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [encode(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    raise InvalidRequestError(
        f"a value of type {type(value).__name__} cannot be sent as JSON", field="result"
    )


def decode(value: Any, *, rebuild: bool = True) -> Any:
    """The inverse of ``encode``; ``rebuild=False`` (the server, on arguments) decodes bytes only."""
    if isinstance(value, list):
        return [decode(v, rebuild=rebuild) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {BYTES_KEY}:
        return decode_bytes(value[BYTES_KEY])
    name = value.get(TYPE_KEY)
    cls = RESULT_TYPES.get(name) if rebuild and isinstance(name, str) else None
    fields = {k: decode(v, rebuild=rebuild) for k, v in value.items() if not (cls and k == TYPE_KEY)}
    if cls is None:
        return fields
    return _rebuild(cls, fields)


def decode_bytes(text: object, field: str = "$bytes") -> bytes:
    """Base64 text as bytes; ``InvalidRequestError`` naming ``field`` if it is not base64."""
    if not isinstance(text, str):
        raise InvalidRequestError(f"{field} must be a base64 string", field=field)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidRequestError(f"{field} is not valid base64", field=field) from None


def _rebuild(cls: type, fields: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(v, hints.get(k)) for k, v in fields.items() if k in known}
    try:
        return cls(**kwargs)
    except TypeError:
        return fields  # a peer of another version: keep the data rather than fail the call


def _coerce(value: Any, hint: Any) -> Any:
    """Lists back into the tuples and frozensets a dataclass field declares."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None) and value is not None:
                return _coerce(value, arg)
        return value
    if not isinstance(value, list):
        return value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a) for v, a in zip(value, args, strict=True))
        return tuple(value)
    if origin in (frozenset, set):
        return origin(_coerce(v, args[0]) if args else v for v in value)
    if origin is list and args:
        return [_coerce(v, args[0]) for v in value]
    return value


# -- errors --------------------------------------------------------------------------------------

# Most specific first: the first isinstance match decides.
_STATUS: tuple[tuple[type[AIOSError], int], ...] = (
    (AuthenticationError, 401),
    (AccessDeniedError, 403),
    (PayloadTooLargeError, 413),
    (NotFoundError, 404),
    (MemoryEntryNotFoundError, 404),
    (KeyNotFoundError, 404),
    (InvalidRequestError, 400),
    (ConfigError, 400),
    (QueueFullError, 429),
    (RateLimitedError, 429),
    (VersionConflictError, 409),
    (DeadlineExceededError, 504),
    (BackendTimeoutError, 504),
    (KernelNotRunningError, 503),
    (CancelledError, 503),
    (StorageError, 503),
    (BackendError, 502),
    (ToolError, 422),
    (KernelInternalError, 500),
)

_OPENAI_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "unprocessable_entity_error",
    429: "rate_limit_error",
}

# When the peer names no class we know, the status picks the nearest one.
_BY_STATUS: Mapping[int, type[AIOSError]] = types.MappingProxyType(
    {
        400: InvalidRequestError,
        401: AuthenticationError,
        403: AccessDeniedError,
        404: NotFoundError,
        413: PayloadTooLargeError,
        422: ToolError,
        429: QueueFullError,
        502: BackendError,
        503: KernelNotRunningError,
        504: DeadlineExceededError,
    }
)

_BASE_ATTRS = frozenset({"message", "syscall_id", "agent", "retryable", "args"})


def status_of(exc: AIOSError) -> int:
    """The HTTP status that answers ``exc``."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(exc: AIOSError, status: int | None = None) -> dict[str, Any]:
    """The JSON body of an error response (or of an SSE error event)."""
    status = status_of(exc) if status is None else status
    details = {
        k: v
        for k, v in vars(exc).items()
        if not k.startswith("_") and k not in _BASE_ATTRS and (v is None or isinstance(v, str | int | float))
    }
    if exc.syscall_id:
        details["syscall_id"] = exc.syscall_id
    if exc.agent:
        details["agent"] = exc.agent
    param = getattr(exc, "field", None)
    return {
        "error": {
            "message": exc.message,
            "type": _OPENAI_TYPE.get(status, "server_error"),
            "param": param if isinstance(param, str) else None,
            "code": type(exc).__name__,
            "retryable": bool(exc.retryable),
            "details": details,
        }
    }


def error_from_body(status: int, body: object) -> AIOSError:
    """The ``AIOSError`` a server's error response describes (its own class when known here)."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        cls = _BY_STATUS.get(status, AIOSError)
        return _make(cls, f"the kernel server answered HTTP {status}: {str(body)[:200]}", {}, None)
    message = err.get("message") if isinstance(err.get("message"), str) else f"HTTP {status}"
    code = err.get("code")
    found = _error_class(code) if isinstance(code, str) else None
    cls = found if found is not None else _BY_STATUS.get(status, AIOSError)
    details = err.get("details") if isinstance(err.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    exc = _make(cls, str(message), dict(details), err.get("retryable"))
    if isinstance(err.get("param"), str) and not getattr(exc, "field", None):
        exc.field = err["param"]  # type: ignore[attr-defined]
    return exc


def _make(cls: type[AIOSError], message: str, details: dict[str, Any], retryable: object) -> AIOSError:
    # Subclass constructors differ (some require owner/key); the attributes came over the wire, so
    # the instance is built bare and given them, whatever the constructor's signature.
    exc = cls.__new__(cls)
    AIOSError.__init__(
        exc,
        message,
        syscall_id=_str_or_none(details.pop("syscall_id", None)),
        agent=_str_or_none(details.pop("agent", None)),
    )
    for key, value in details.items():
        if isinstance(key, str) and key.isidentifier() and not key.startswith("_"):
            setattr(exc, key, value)
    if not hasattr(exc, "field") and issubclass(cls, InvalidRequestError | ConfigError):
        exc.field = None  # type: ignore[attr-defined]
    if isinstance(retryable, bool) and retryable != cls.retryable:
        exc.retryable = retryable
    return exc


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _error_class(name: str) -> type[AIOSError] | None:
    """The ``AIOSError`` subclass called ``name`` among those loaded (a class, never an import)."""
    todo: list[type[AIOSError]] = [AIOSError]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name:
            return cls
        todo.extend(cls.__subclasses__())
    return None
