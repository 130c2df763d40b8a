"""The storage manager: durable, versioned, per-agent key-value storage behind the access manager.

Each agent (owner) has a namespace of keys. Nothing is ever overwritten in place: every write,
delete (a tombstone) and rollback adds a version, so the whole history of a key stays readable.

Every call names an ``actor`` (who asks) and an ``owner`` (whose namespace; None means the
actor's own). The access manager decides (``check``) and, for destructive operations, asks for
confirmation (``confirm_destructive``):

==========  =================  =====================================================
call        permission         confirmation
==========  =================  =====================================================
write       write (key)        "overwrite" when the key has a live value
read        read (key)         -
versions    read (key)         -
list        read (prefix)      - (listing prefix P needs read on P, e.g. a grant on P)
delete      delete (key)       "delete"
rollback    rollback (key)     "rollback"
share       share              - (grants go through ``AccessManager.grant``)
==========  =================  =====================================================

A confirmation is for the operation on the key ("may A overwrite B's key k"), not for one
version of it. A write that needed no confirmation because the key had no live value is a
compare-and-set on the head it saw, so a concurrent writer cannot turn it into an unconfirmed
overwrite: on a conflict it is examined again (and the overwrite confirmed).

A write is acknowledged (the coroutine returns) only after the backend committed it.
"""

from __future__ import annotations

import builtins
import math
import time
from collections.abc import Callable, Iterable

from aios.errors import ConfigError, InvalidRequestError
from aios.managers.access import AccessManager, Grant
from aios.managers.storage_backend import (
    KeyNotFoundError,
    StorageBackend,
    StorageError,
    VersionConflictError,
    VersionInfo,
)
from aios.managers.storage_sqlite import SQLiteStorage

__all__ = [
    "KeyNotFoundError",
    "SQLiteStorage",
    "StorageBackend",
    "StorageError",
    "StorageManager",
    "VersionConflictError",
    "VersionInfo",
]

_KIND = "storage"


class StorageManager:
    """Versioned per-agent storage with access control, confirmation and an audit trail."""

    def __init__(
        self,
        backend: StorageBackend,
        access: AccessManager,
        *,
        max_value_bytes: int = 16 * 1024 * 1024,
        max_key_chars: int = 1024,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 8,
    ):
        if not isinstance(backend, StorageBackend):
            raise ConfigError("backend does not implement StorageBackend", field="backend")
        for name, n in (("max_value_bytes", max_value_bytes), ("max_key_chars", max_key_chars)):
            if not isinstance(n, int) or n < 1:
                raise ConfigError(f"{name} must be a positive integer", field=name)
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError("max_attempts must be a positive integer", field="max_attempts")
        self.backend = backend
        self.access = access
        self.max_value_bytes = max_value_bytes
        self.max_key_chars = max_key_chars
        self.max_attempts = max_attempts
        self._clock = clock

    async def write(self, owner: str | None, key: str, value: bytes | str, *, actor: str) -> int:
        """Store ``value`` as a new version of ``key``; returns the version number once committed."""
        owner = self._who(owner, actor)
        self._check_key(key, "key")
        data = self._check_value(value)
        self.access.check(actor, owner, _KIND, "write", target=key)
        if not self.access.needs_confirmation(actor, owner, _KIND, "overwrite"):
            info = await self.backend.append(owner, key, data, writer=actor, time=self._clock())
            return info.version

        for _ in range(self.max_attempts):
            head = await self.backend.head(owner, key)
            expected: int | None
            if head is not None and not head.deleted:
                await self.access.confirm_destructive(actor, owner, _KIND, "overwrite", key)
                expected = None
            else:
                expected = head.version if head is not None else 0
            try:
                info = await self.backend.append(
                    owner, key, data, writer=actor, time=self._clock(), expected_head=expected
                )
            except VersionConflictError:
                continue  # the key was written meanwhile: this may now be an overwrite to confirm
            return info.version
        raise StorageError(
            f"{owner!r}/{key!r}: gave up after {self.max_attempts} conflicting concurrent writes",
            retryable=True,
        )

    async def read(self, owner: str | None, key: str, *, actor: str, version: int | None = None) -> bytes:
        """The value of ``key`` (its latest version, or ``version``)."""
        owner = self._who(owner, actor)
        self._check_key(key, "key")
        self._check_version(version)
        self.access.check(actor, owner, _KIND, "read", target=key)
        found = await self.backend.get(owner, key, version)
        if found is None:
            at = f" version {version}" if version is not None else ""
            raise KeyNotFoundError(
                f"{owner!r} has no key {key!r}{at}", owner=owner, key=key, version=version, agent=actor
            )
        info, value = found
        if value is None:
            raise KeyNotFoundError(
                f"{owner!r}'s key {key!r} is deleted (version {info.version})",
                owner=owner,
                key=key,
                version=info.version,
                agent=actor,
            )
        return value

    async def list(self, owner: str | None, *, actor: str, prefix: str = "") -> builtins.list[str]:
        """The live keys of ``owner`` that start with ``prefix``, sorted."""
        owner = self._who(owner, actor)
        self._check_key(prefix, "prefix", allow_empty=True)
        self.access.check(actor, owner, _KIND, "read", target=prefix or None)
        return await self.backend.keys(owner, prefix)

    async def versions(self, owner: str | None, key: str, *, actor: str) -> builtins.list[VersionInfo]:
        """The history of ``key``, oldest first, tombstones included."""
        owner = self._who(owner, actor)
        self._check_key(key, "key")
        self.access.check(actor, owner, _KIND, "read", target=key)
        history = await self.backend.history(owner, key)
        if not history:
            raise KeyNotFoundError(f"{owner!r} has no key {key!r}", owner=owner, key=key, agent=actor)
        return history

    async def delete(self, owner: str | None, key: str, *, actor: str) -> int:
        """Delete ``key`` by writing a tombstone version (history is kept); returns its number."""
        owner = self._who(owner, actor)
        self._check_key(key, "key")
        self.access.check(actor, owner, _KIND, "delete", target=key)

        head = await self.backend.head(owner, key)
        if head is None or head.deleted:
            raise KeyNotFoundError(f"{owner!r} has no live key {key!r}", owner=owner, key=key, agent=actor)
        await self.access.confirm_destructive(actor, owner, _KIND, "delete", key)
        info = await self.backend.append(owner, key, None, writer=actor, time=self._clock())
        return info.version

    async def rollback(
        self,
        owner: str | None,
        key: str,
        *,
        actor: str,
        version: int | None = None,
        at_time: float | None = None,
    ) -> int:
        """Make ``key`` what it was at ``version`` or at ``at_time``, as a new version; returns it.

        With neither, the last change is undone (back to the version before the head). The state
        "at" a time before the key existed is absence, so rolling back there writes a tombstone;
        rolling back to a tombstone version deletes the key again.
        """
        owner = self._who(owner, actor)
        self._check_key(key, "key")
        self._check_version(version)
        if at_time is not None:
            if (
                isinstance(at_time, bool)
                or not isinstance(at_time, int | float)
                or not math.isfinite(at_time)
            ):
                raise InvalidRequestError("at_time must be a finite number", field="at_time")
            if version is not None:
                raise InvalidRequestError("give version or at_time, not both", field="at_time")
        self.access.check(actor, owner, _KIND, "rollback", target=key)

        history = await self.backend.history(owner, key)
        if not history:
            raise KeyNotFoundError(f"{owner!r} has no key {key!r}", owner=owner, key=key, agent=actor)
        head = history[-1]
        target: VersionInfo | None
        if version is not None:
            if version > head.version:
                raise KeyNotFoundError(
                    f"{owner!r}'s key {key!r} has no version {version} (head is {head.version})",
                    owner=owner,
                    key=key,
                    version=version,
                    agent=actor,
                )
            target = history[version - 1]
        elif at_time is not None:
            target = next((v for v in reversed(history) if v.time <= at_time), None)
        else:
            target = history[-2] if len(history) > 1 else None
        await self.access.confirm_destructive(actor, owner, _KIND, "rollback", key)
        value: bytes | None = None
        if target is not None and not target.deleted:
            found = await self.backend.get(owner, key, target.version)
            value = found[1] if found is not None else None
        info = await self.backend.append(owner, key, value, writer=actor, time=self._clock())
        return info.version

    async def share(
        self,
        owner: str | None,
        key_prefix_or_all: str | None,
        *,
        actor: str,
        with_agent: str,
        ops: Iterable[str] = ("read",),
    ) -> Grant:
        """Grant ``with_agent`` ``ops`` on the keys under a prefix (None or "": every key)."""
        owner = self._who(owner, actor)
        if not isinstance(with_agent, str) or not with_agent:
            raise InvalidRequestError("with_agent must be a non-empty string", field="with_agent")
        prefix = key_prefix_or_all or ""
        self._check_key(prefix, "key_prefix_or_all", allow_empty=True)
        return self.access.grant(actor, owner, _KIND, with_agent, ops, prefix=prefix)

    async def unshare(
        self,
        owner: str | None,
        key_prefix_or_all: str | None,
        *,
        actor: str,
        with_agent: str,
        ops: Iterable[str] | None = None,
    ) -> None:
        """Revoke what ``share`` granted on that prefix (``ops=None``: everything)."""
        owner = self._who(owner, actor)
        if not isinstance(with_agent, str) or not with_agent:
            raise InvalidRequestError("with_agent must be a non-empty string", field="with_agent")
        prefix = key_prefix_or_all or ""
        self._check_key(prefix, "key_prefix_or_all", allow_empty=True)
        self.access.revoke(actor, owner, _KIND, with_agent, ops, prefix=prefix)

    async def close(self) -> None:
        """Close the backend."""
        await self.backend.close()

    # -- helpers --------------------------------------------------------------------------------

    @staticmethod
    def _who(owner: str | None, actor: str) -> str:
        if not isinstance(actor, str) or not actor:
            raise InvalidRequestError("actor must be a non-empty string", field="actor")
        if owner is None:
            return actor
        if not isinstance(owner, str) or not owner:
            raise InvalidRequestError("owner must be a non-empty string or None", field="owner")
        return owner

    def _check_key(self, key: object, field: str, *, allow_empty: bool = False) -> None:
        if not isinstance(key, str):
            raise InvalidRequestError(f"{field} must be a string, not {type(key).__name__}", field=field)
        if not key and not allow_empty:
            raise InvalidRequestError(f"{field} must not be empty", field=field)
        if len(key) > self.max_key_chars:
            raise InvalidRequestError(f"{field} is longer than {self.max_key_chars} characters", field=field)
        # Control characters (NUL first) are refused: they break C APIs and let a key rewrite the
        # line of a terminal confirmation prompt.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
            raise InvalidRequestError(f"{field} must not contain control characters or NUL", field=field)
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRequestError(f"{field} is not valid Unicode (lone surrogate)", field=field) from None

    def _check_value(self, value: object) -> bytes:
        if isinstance(value, str):
            try:
                data = value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError(
                    "value is not valid Unicode (lone surrogate)", field="value"
                ) from None
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
        else:
            raise InvalidRequestError(
                f"value must be bytes or str, not {type(value).__name__}", field="value"
            )
        if len(data) > self.max_value_bytes:
            raise InvalidRequestError(
                f"value is {len(data)} bytes, more than the limit of {self.max_value_bytes}", field="value"
            )
        return data

    @staticmethod
    def _check_version(version: object) -> None:
        if version is None:
            return
        # SQLite integers are signed 64-bit: a larger version can never exist (and overflows).
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**63:
            raise InvalidRequestError("version must be a positive 64-bit integer", field="version")
