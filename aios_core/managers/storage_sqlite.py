"""The default storage backend: one SQLite file, WAL mode, every call on one worker thread.

Durability: the database runs in WAL mode. With ``synchronous="FULL"`` (the default) every commit
fsyncs the WAL before ``append`` returns, so an acknowledged write survives a kill -9 of the
process *and* a power loss or OS crash. With ``synchronous="NORMAL"`` commits are written to the
WAL but fsynced only at checkpoints: faster, still safe against a crash of the process (the OS
keeps the written pages), but the last commits may be lost on power loss.

Threading: one connection, created on and used only by a dedicated single-thread executor
(``check_same_thread`` stays on, so a mistake would raise instead of corrupting). The event loop
only awaits futures from that thread; it never touches the disk. Calls are bounded by
``op_timeout`` (``DeadlineExceededError``); a write whose caller timed out or was cancelled may
still commit, since the thread cannot be interrupted mid-transaction: only a returned ``append``
is an acknowledgement. Writes from other processes are waited on for up to ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from aios.errors import ConfigError, DeadlineExceededError
from aios.managers.storage_backend import StorageError, VersionConflictError, VersionInfo

__all__ = ["SQLiteStorage"]

_T = TypeVar("_T")

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    owner   TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    version INTEGER NOT NULL,
    time    REAL    NOT NULL,
    writer  TEXT    NOT NULL,
    deleted INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    value   BLOB,
    PRIMARY KEY (owner, key, version)
);
CREATE TABLE IF NOT EXISTS heads (
    owner   TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    version INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
"""
_INFO_COLUMNS = "version, time, size, deleted, writer"


class SQLiteStorage:
    """A ``StorageBackend`` on one SQLite file (see the module docstring for durability)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 5.0,
        op_timeout: float = 60.0,
    ):
        if synchronous not in ("FULL", "NORMAL"):
            raise ConfigError("synchronous must be 'FULL' or 'NORMAL'", field="synchronous")
        if not busy_timeout > 0:
            raise ConfigError("busy_timeout must be positive", field="busy_timeout")
        if not op_timeout > 0:
            raise ConfigError("op_timeout must be positive", field="op_timeout")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.op_timeout = op_timeout
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aios-sqlite")
        # Created, used and closed only on the executor's thread.
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def __aenter__(self) -> SQLiteStorage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the StorageBackend protocol ------------------------------------------------------------

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
        """Add version head+1 (``value=None``: tombstone); returns after the commit (see module doc)."""

        def work(conn: sqlite3.Connection) -> VersionInfo:
            # IMMEDIATE takes the write lock first, so reading the head and inserting are atomic
            # even against another process writing the same file.
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT version FROM heads WHERE owner=? AND key=?", (owner, key)
                ).fetchone()
                current = int(row[0]) if row else 0
                if expected_head is not None and current != expected_head:
                    raise VersionConflictError(
                        f"{owner!r}/{key!r}: expected head {expected_head}, found {current}",
                        owner=owner,
                        key=key,
                        expected=expected_head,
                        actual=current,
                    )
                info = VersionInfo(
                    current + 1, time, len(value) if value is not None else 0, value is None, writer
                )
                conn.execute(
                    "INSERT INTO versions (owner, key, version, time, writer, deleted, size, value)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (owner, key, info.version, time, writer, int(info.deleted), info.size, value),
                )
                conn.execute(
                    "INSERT INTO heads (owner, key, version, deleted) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (owner, key)"
                    " DO UPDATE SET version = excluded.version, deleted = excluded.deleted",
                    (owner, key, info.version, int(info.deleted)),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return info

        return await self._run(work)

    async def head(self, owner: str, key: str) -> VersionInfo | None:
        """The latest version of the key, or None if it never existed."""

        def work(conn: sqlite3.Connection) -> VersionInfo | None:
            row = conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM versions WHERE owner=? AND key=? ORDER BY version DESC LIMIT 1",
                (owner, key),
            ).fetchone()
            return _info(row) if row else None

        return await self._run(work)

    async def get(
        self, owner: str, key: str, version: int | None = None
    ) -> tuple[VersionInfo, bytes | None] | None:
        """A version (None: the head) with its value (None for a tombstone), or None if absent."""

        def work(conn: sqlite3.Connection) -> tuple[VersionInfo, bytes | None] | None:
            if version is None:
                sql = f"SELECT {_INFO_COLUMNS}, value FROM versions WHERE owner=? AND key=?"
                row = conn.execute(sql + " ORDER BY version DESC LIMIT 1", (owner, key)).fetchone()
            else:
                sql = f"SELECT {_INFO_COLUMNS}, value FROM versions WHERE owner=? AND key=? AND version=?"
                row = conn.execute(sql, (owner, key, version)).fetchone()
            if row is None:
                return None
            value = row[5]
            return _info(row[:5]), (bytes(value) if value is not None else None)

        return await self._run(work)

    async def history(self, owner: str, key: str) -> list[VersionInfo]:
        """Every version of the key, oldest first."""

        def work(conn: sqlite3.Connection) -> list[VersionInfo]:
            rows = conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM versions WHERE owner=? AND key=? ORDER BY version", (owner, key)
            ).fetchall()
            return [_info(r) for r in rows]

        return await self._run(work)

    async def keys(self, owner: str, prefix: str = "") -> list[str]:
        """The owner's live keys starting with ``prefix``, sorted."""

        def work(conn: sqlite3.Connection) -> list[str]:
            # "key >= prefix" lets the primary-key index start at the prefix; substr does the match
            # (LIKE/GLOB would need escaping of their wildcards).
            rows = conn.execute(
                "SELECT key FROM heads WHERE owner=? AND deleted=0 AND key >= ? AND substr(key, 1, ?) = ?"
                " ORDER BY key",
                (owner, prefix, len(prefix), prefix),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(work)

    async def close(self) -> None:
        """Close the connection and stop the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_conn)
        finally:
            # The close job was the last one: the thread exits without being waited on here.
            self._executor.shutdown(wait=False)

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    # -- the worker thread ----------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise StorageError(f"storage {self.path!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.op_timeout):
                return await loop.run_in_executor(self._executor, self._call, work)
        except TimeoutError as exc:
            raise DeadlineExceededError(f"storage call took longer than {self.op_timeout}s") from exc
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            raise StorageError(f"sqlite error on {self.path!r}: {exc}", retryable=busy) from exc
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite error on {self.path!r}: {exc}") from exc

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._conn is None:
            self._conn = self._open()
        return work(self._conn)

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; every write is an explicit BEGIN/COMMIT.
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"could not put {self.path!r} in WAL mode (got {mode!r})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            found = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if found not in (0, _SCHEMA_VERSION):
                raise StorageError(f"{self.path!r} has schema version {found}, expected {_SCHEMA_VERSION}")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _info(row: Any) -> VersionInfo:
    version, time, size, deleted, writer = row
    return VersionInfo(int(version), float(time), int(size), bool(deleted), str(writer))
