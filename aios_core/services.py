"""The non-LLM managers as one syscall table: memory, storage, tool and access operations.

``Services`` builds the managers from the kernel config and maps ``(kind, op)`` to a handler
that takes the calling agent and keyword arguments. The kernel runs every handler through the
dispatcher (``Kernel.syscall``), so these calls get the same record, deadline, typed errors and
metrics as LLM calls. The calling agent is always the *actor*; ``owner`` (whose memory or
storage) defaults to the actor, and the access manager decides the rest.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from aios.config import KernelConfig
from aios.errors import ConfigError, InvalidRequestError
from aios.managers.access import AccessManager
from aios.managers.builtin_tools import builtin_tools, make_file_tool
from aios.managers.confirm import AllowListConfirmer, Confirmer, ConfirmRule, DenyConfirmer, TerminalConfirmer
from aios.managers.memory import MemoryManager, MemoryOp
from aios.managers.storage import SQLiteStorage, StorageManager
from aios.managers.tools import Tool, ToolManager, calling_agent, load_plugin_tools

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Op:
    """One syscall of the table: its handler and how many may run at once."""

    handler: Handler
    concurrency: int = 64


def default_data_dir() -> Path:
    """``$AIOS_HOME`` or ``~/.aios``: where the kernel keeps its storage file."""
    return Path(os.environ.get("AIOS_HOME") or Path.home() / ".aios")


def _confirmer(config: KernelConfig) -> Confirmer:
    fallback: Confirmer = TerminalConfirmer() if config.confirm == "terminal" else DenyConfirmer()
    if config.confirm_allow:
        try:
            rules = [ConfirmRule(**r) for r in config.confirm_allow]
        except TypeError as exc:
            raise ConfigError(f"confirm_allow: {exc}", field="confirm_allow") from None
        return AllowListConfirmer(rules, fallback=fallback)
    return fallback


class Services:
    """Memory, storage, tool and access managers behind one ``(kind, op)`` table."""

    def __init__(self, config: KernelConfig, *, plugins: pluggy.PluginManager | None = None):
        data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create data_dir {data_dir}: {exc}", field="data_dir") from None
        self.storage_path = data_dir / "storage.sqlite"
        self.access = AccessManager(
            groups=config.groups,
            members=config.members,
            confirmer=_confirmer(config),
            audit_sink=str(data_dir / "audit.jsonl") if config.audit_file else None,
        )
        self._store = SQLiteStorage(self.storage_path)
        self.storage = StorageManager(self._store, self.access)
        self.memory = MemoryManager(
            # Eviction writes an agent's own entries; the memory manager checks access itself.
            StorageManager(self._store, AccessManager()),
            budget_bytes=config.memory_budget_bytes,
            threshold=config.memory_threshold,
            k=config.memory_k,
            check=self._memory_check,
        )
        self.tools = ToolManager()
        # Built-in tools arrive through the aios_tools hook like third-party ones.
        for t in load_plugin_tools(plugins) if plugins is not None else builtin_tools():
            self.tools.register(t)
        self.tools.register(self._file_tool())
        self.table: dict[tuple[str, str], Op] = self._table()

    def _memory_check(self, actor: str, owner: str, op: MemoryOp) -> None:
        self.access.check(actor, owner, "memory", op)

    def _table(self) -> dict[tuple[str, str], Op]:
        s, m, a = self.storage, self.memory, self.access

        def own(fn: Handler) -> Handler:
            async def call(agent: str, *, owner: str | None = None, **kw: Any) -> Any:
                return await fn(owner or agent, actor=agent, **kw)

            call.__signature__ = _with_owner(fn)  # type: ignore[attr-defined]
            return call

        async def tool_call(agent: str, *, name: str, arguments: dict[str, Any] | str | None = None) -> Any:
            return await self._call_tool(agent, name, arguments or {})

        async def tool_list(agent: str) -> list[dict[str, Any]]:
            return self.tools.list_tools()

        async def grant(agent: str, *, kind: str, grantee: str, ops: list[str], prefix: str = "") -> Any:
            return a.grant(agent, agent, kind, grantee, ops, prefix=prefix)

        async def revoke(
            agent: str, *, kind: str, grantee: str, ops: list[str] | None = None, prefix: str | None = ""
        ) -> None:
            a.revoke(agent, agent, kind, grantee, ops, prefix=prefix)

        async def allowed(agent: str, *, owner: str, kind: str, op: str, target: str | None = None) -> bool:
            return a.allowed(agent, owner, kind, op, target=target)

        async def audit(agent: str, *, limit: int = 100) -> Any:
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise InvalidRequestError(f"limit must be an integer >= 0, got {limit!r:.50}", field="limit")
            records = [r for r in a.audit_log(limit=None) if agent in (r.actor, r.owner)]
            # Not records[-limit:]: that returns everything for 0 and drops the oldest for -1.
            return records[max(0, len(records) - limit) :]

        async def memory_stats(agent: str, *, owner: str | None = None) -> Any:
            self.access.check(agent, owner or agent, "memory", "read")
            return await m.stats(owner or agent)

        table = {
            ("memory", "add"): Op(own(m.add)),
            ("memory", "get"): Op(own(m.get)),
            ("memory", "update"): Op(own(m.update)),
            ("memory", "remove"): Op(own(m.remove)),
            ("memory", "recent"): Op(own(m.recent)),
            ("memory", "search"): Op(own(m.search)),
            ("memory", "stats"): Op(memory_stats),
            ("storage", "write"): Op(own(s.write)),
            ("storage", "read"): Op(own(s.read)),
            ("storage", "list"): Op(own(s.list)),
            ("storage", "delete"): Op(own(s.delete)),
            ("storage", "versions"): Op(own(s.versions)),
            ("storage", "rollback"): Op(own(s.rollback)),
            ("storage", "share"): Op(own(s.share)),
            ("storage", "unshare"): Op(own(s.unshare)),
            ("tool", "call"): Op(tool_call, concurrency=256),
            ("tool", "list"): Op(tool_list),
            ("access", "grant"): Op(grant),
            ("access", "revoke"): Op(revoke),
            ("access", "allowed"): Op(allowed),
            ("access", "audit"): Op(audit),
        }
        return table

    async def _call_tool(self, agent: str, name: str, arguments: dict[str, Any] | str) -> Any:
        return await self.tools.call(name, arguments, agent=agent)

    def _file_tool(self) -> Tool:
        """The ``file`` tool on the storage of whichever agent calls it (``calling_agent``)."""

        def me() -> str:
            agent = calling_agent()
            if agent is None:
                raise RuntimeError("the file tool runs only as a kernel tool syscall")
            return agent

        async def read(key: str) -> bytes:
            return await self.storage.read(me(), key, actor=me())

        async def write(key: str, value: bytes) -> int:
            return await self.storage.write(me(), key, value, actor=me())

        async def list_(prefix: str) -> list[str]:
            return await self.storage.list(me(), actor=me(), prefix=prefix)

        return make_file_tool(read, write, list_)

    def resolve(self, kind: str, op: str, args: dict[str, Any]) -> tuple[Op, dict[str, Any]]:
        """The table entry for ``(kind, op)`` with ``args`` checked against its signature."""
        # Checked before the table lookup: an unhashable kind or op would raise a raw TypeError.
        for name, value in (("kind", kind), ("op", op)):
            if not isinstance(value, str):
                raise InvalidRequestError(f"{name} must be a string, got {type(value).__name__}", field=name)
        entry = self.table.get((kind, op))
        if entry is None:
            known = sorted(f"{k}.{o}" for k, o in self.table)
            raise InvalidRequestError(f"unknown syscall {kind}.{op}; known: {known}", field="op")
        sig = inspect.signature(entry.handler)
        try:
            sig.bind("agent", **args)
        except TypeError as exc:
            raise InvalidRequestError(f"{kind}.{op}: {exc}", field=_bad_arg(sig, args)) from None
        return entry, args

    async def close(self) -> None:
        """Close the storage file and the audit sink."""
        await self._store.close()
        self.access.close()


def _with_owner(fn: Handler) -> inspect.Signature:
    """``fn``'s signature as the table exposes it: agent first, ``owner`` optional, no ``actor``."""
    params = [p for name, p in inspect.signature(fn).parameters.items() if name not in ("actor",)]
    first, rest = params[0], params[1:]
    agent = inspect.Parameter("agent", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    owner = inspect.Parameter("owner", inspect.Parameter.KEYWORD_ONLY, default=None)
    assert first.name in ("owner", "agent"), first
    kw = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
    return inspect.Signature([agent, owner, *kw])


def _bad_arg(sig: inspect.Signature, args: dict[str, Any]) -> str:
    names = set(sig.parameters)
    extra = [a for a in args if a not in names]
    if extra:
        return f"arguments.{extra[0]}"
    missing = [
        n
        for n, p in sig.parameters.items()
        if n != "agent"
        and p.default is inspect.Parameter.empty
        and n not in args
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]
    return f"arguments.{missing[0]}" if missing else "arguments"
