"""What a storage backend is: an append-only, versioned key-value store per owner.

The storage manager enforces access, confirmation and validation; a backend only keeps versions.
Every change is a new version ``n + 1`` of ``(owner, key)`` (a delete is a version with no value,
a tombstone), so history is never rewritten. ``SQLiteStorage`` is the default; a server database
implements the same Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from aios.errors import KeyNotFoundError, StorageError, VersionConflictError

__all__ = ["KeyNotFoundError", "StorageBackend", "StorageError", "VersionConflictError", "VersionInfo"]


@dataclass(slots=True, frozen=True)
class VersionInfo:
    """One version of a key: its number, when and by whom it was written, its size, tombstone or not."""

    version: int
    time: float
    size: int
    deleted: bool
    writer: str


@runtime_checkable
class StorageBackend(Protocol):
    """An append-only versioned store; every method is a coroutine that never blocks the loop."""

    async def append(
        self,
        owner: str,
        key: str,
        value: bytes | None,
        *,
        writer: str,
        time: float,
        expected_head: int | None = None,
    ) -> VersionInfo:
        """Add version head+1 (``value=None``: a tombstone); returns only once it is durable.

        ``expected_head`` (0: no version yet) makes it a compare-and-set: if the current head differs,
        nothing is written and ``VersionConflictError`` is raised. None appends unconditionally.
        """
        ...

    async def head(self, owner: str, key: str) -> VersionInfo | None:
        """The latest version of the key (tombstone or not), or None if it never existed."""
        ...

    async def get(
        self, owner: str, key: str, version: int | None = None
    ) -> tuple[VersionInfo, bytes | None] | None:
        """A version (None: the head) and its value (None for a tombstone), or None if absent."""
        ...

    async def history(self, owner: str, key: str) -> list[VersionInfo]:
        """Every version of the key, oldest first (empty if it never existed)."""
        ...

    async def keys(self, owner: str, prefix: str = "") -> list[str]:
        """The owner's live (not deleted) keys starting with ``prefix``, sorted."""
        ...

    async def close(self) -> None:
        """Release the backend; later calls raise ``StorageError``."""
        ...
