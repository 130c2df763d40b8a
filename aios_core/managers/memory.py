"""The memory manager: per-agent bounded memory, LRU-K eviction to storage, retrieval.

Each agent's entries live in RAM under a budget (bytes or tokens). Texts are stored through a
per-agent prefix trie, so the budget is charged the *compressed* size: a prefix shared by many
entries counts once. When an operation pushes usage past ``threshold x budget``, entries are
evicted in LRU-K order to the store under ``memory/<entry id>`` until usage is back within the
threshold; reading an evicted entry pages it back in (which may evict others).

Guarantees:
- An operation makes room *after* it changes memory and undoes its change if making room fails
  or is cancelled, so a failed operation leaves its entry as it was (entries it managed to evict
  stay evicted: a valid state), and usage is within the threshold after every operation.
- An entry leaves RAM only once the store has accepted it; a page-in deletes the stored copy
  only once the entry is back in RAM. A stored copy whose delete failed is stale but harmless:
  the next eviction overwrites it and ``remove`` deletes it.
- One agent's operations run one at a time (a lock per agent); different agents run in parallel.
  Every operation is bounded by ``timeout`` seconds (access check, embedding and lock wait included).

The budget does not count the keyword index (the terms of every entry, evicted ones too, so a
search finds them), LRU-K histories, embedding vectors, or per-object overhead.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import json
import logging
import math
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeGuard, runtime_checkable

from aios.config import positive_int
from aios.errors import (
    AccessDeniedError,
    AIOSError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelInternalError,
    MemoryEntryNotFoundError,
)
from aios.managers.agent_memory import AgentMemory, MemoryEntry
from aios.managers.embeddings import Embedder
from aios.managers.lruk import LRUKTracker
from aios.managers.storage_backend import KeyNotFoundError

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "STORE_PREFIX",
    "AccessCheck",
    "EvictionStore",
    "MemoryEntry",
    "MemoryEntryNotFoundError",
    "MemoryManager",
    "MemoryOp",
    "MemoryStats",
    "SearchHit",
    "SearchMode",
    "default_check",
    "default_token_count",
]

_log = logging.getLogger(__name__)

DEFAULT_BUDGET_BYTES = 1 << 20
#: Evicted entries are stored under ``STORE_PREFIX + entry id``.
STORE_PREFIX = "memory/"

MemoryOp = Literal["read", "write", "delete"]
#: ``check(actor, owner, op)`` raises ``AccessDeniedError`` to refuse; it may be a coroutine.
AccessCheck = Callable[[str, str, MemoryOp], Awaitable[None] | None]
SearchMode = Literal["keyword", "semantic"]


@runtime_checkable
class EvictionStore(Protocol):
    """The part of the storage manager that eviction needs (``StorageManager`` has it)."""

    async def write(self, owner: str, key: str, value: bytes | str, *, actor: str) -> int:
        """Store a new version of ``key``; returns its version number."""
        ...

    async def read(self, owner: str, key: str, *, actor: str, version: int | None = None) -> bytes:
        """The value of ``key``; raises ``KeyNotFoundError`` when it is absent."""
        ...

    async def delete(self, owner: str, key: str, *, actor: str) -> object:
        """Delete ``key`` (whatever it returns, e.g. a tombstone version, is ignored)."""
        ...

    async def list(self, owner: str, *, actor: str, prefix: str = "") -> builtins.list[str]:
        """The owner's keys starting with ``prefix``."""
        ...


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the entry and its score (BM25, or cosine similarity)."""

    entry: MemoryEntry
    score: float


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """One agent's memory accounting; ``used``, ``budget`` and ``limit`` are in ``unit``."""

    agent: str
    unit: Literal["bytes", "tokens"]
    used: int
    budget: int
    limit: float
    resident: int
    evicted: int
    evictions: int
    page_ins: int
    raw_bytes: int
    stored_bytes: int
    compression_ratio: float


def default_check(actor: str, owner: str, op: MemoryOp) -> None:
    """Allow an agent its own memory and nothing else."""
    if actor != owner:
        raise AccessDeniedError(f"{actor!r} may not {op} the memory of {owner!r}", agent=actor)


def default_token_count(text: str) -> int:
    """About four characters a token, rounded up so that no text is free."""
    return -(-len(text) // 4)


def _positive_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _finite(value: object) -> TypeGuard[float]:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"{name} must be a non-empty string", field=name)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequestError(f"{name} is not valid Unicode (a lone surrogate?): {e}", field=name) from e
    return value


def _require_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(f"{name} must be a positive integer, got {value!r}", field=name)
    return value


def _metadata_json(metadata: object) -> str:
    """Canonical JSON of the metadata ("" for none), which is what the budget is charged for."""
    if metadata is None:
        return ""
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InvalidRequestError("metadata must be a mapping with string keys", field="metadata")
    if not metadata:
        return ""
    try:
        return json.dumps(dict(metadata), sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"metadata must be JSON-serialisable: {e}", field="metadata") from e


class MemoryManager:
    """Per-agent bounded memory with LRU-K eviction to an ``EvictionStore``, and search."""

    def __init__(
        self,
        store: EvictionStore,
        *,
        budget_bytes: int | None = None,
        budget_tokens: int | None = None,
        token_counter: Callable[[str], int] | None = None,
        threshold: float = 0.8,
        k: int = 2,
        clock: Callable[[], float] = time.monotonic,
        embedder: Embedder | None = None,
        check: AccessCheck | None = None,
        timeout: float = 30.0,
    ):
        """Budget per agent in bytes (default 1 MiB) or, with ``budget_tokens``, in tokens."""
        if budget_bytes is not None and budget_tokens is not None:
            raise ConfigError("give budget_bytes or budget_tokens, not both", field="budget_tokens")
        if budget_tokens is not None:
            self.unit: Literal["bytes", "tokens"] = "tokens"
            self.budget = positive_int(budget_tokens, "budget_tokens")
        else:
            self.unit = "bytes"
            budget = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
            self.budget = positive_int(budget, "budget_bytes")
        if token_counter is not None and (self.unit != "tokens" or not callable(token_counter)):
            raise ConfigError(
                "token_counter must be a callable, used with budget_tokens", field="token_counter"
            )
        if not _positive_number(threshold) or threshold > 1:
            raise ConfigError(f"threshold must be in (0, 1], got {threshold!r}", field="threshold")
        if not _positive_number(timeout):
            raise ConfigError(
                f"timeout must be a positive number of seconds, got {timeout!r}", field="timeout"
            )
        if embedder is not None and not callable(getattr(embedder, "embed", None)):
            raise ConfigError("embedder must have an embed(texts) method", field="embedder")
        if not isinstance(store, EvictionStore):
            raise ConfigError("store must have async write, read, delete and list methods", field="store")
        if check is not None and not callable(check):
            raise ConfigError("check must be callable", field="check")
        LRUKTracker[str](k)  # validates k by the tracker's own rule, so the two never disagree
        self.k = k
        self.threshold = float(threshold)
        self.limit = self.threshold * self.budget
        self.timeout = float(timeout)
        self._store = store
        self._count_tokens = token_counter or default_token_count
        self._clock = clock
        self._embedder = embedder
        self._check = check or default_check
        self._agents: dict[str, AgentMemory] = {}

    # ---- public operations -------------------------------------------------------------------

    async def add(
        self, agent: str, text: str, *, actor: str, metadata: Mapping[str, Any] | None = None
    ) -> str:
        """Store a new entry for ``agent`` and return its id (evicting others if over threshold)."""
        async with self._deadline(agent):
            await self._authorize(actor, agent, "write")
            text = _require_text(text, "text")
            meta_json = _metadata_json(metadata)
            text_tokens, meta_cost = self._costs(text, meta_json)
            vector = await self._embed_one(text, agent)
            entry_id = uuid.uuid4().hex
            async with self._locked(agent) as mem:
                now = self._clock()
                mem.install(
                    entry_id, text, meta_json=meta_json, meta_cost=meta_cost,
                    text_tokens=text_tokens, created=now, vector=vector,
                )  # fmt: skip
                await self._make_room(agent, mem, entry_id, undo=lambda: mem.forget(entry_id))
                mem.tracker.record(entry_id, now)
                return entry_id

    async def get(self, agent: str, entry_id: str, *, actor: str) -> MemoryEntry:
        """The entry (an access for LRU-K); an evicted entry is paged back in first."""
        async with self._deadline(agent):
            await self._authorize(actor, agent, "read")
            async with self._locked(agent) as mem:
                return await self._access(agent, mem, entry_id)

    async def update(
        self,
        agent: str,
        entry_id: str,
        *,
        actor: str,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryEntry:
        """Replace the entry's text and/or metadata (an access); returns the updated entry."""
        async with self._deadline(agent):
            await self._authorize(actor, agent, "write")
            if text is None and metadata is None:
                raise InvalidRequestError("nothing to update: give text or metadata", field="text")
            if text is not None:
                _require_text(text, "text")
            new_meta = None if metadata is None else _metadata_json(metadata)
            vector = None if text is None else await self._embed_one(text, agent)
            async with self._locked(agent) as mem:
                self._known(mem, agent, entry_id)
                await self._page_in(agent, mem, entry_id)
                old_text = mem.text(entry_id)
                new_text = old_text if text is None else text
                meta_json = mem.resident[entry_id].meta_json if new_meta is None else new_meta
                text_tokens, meta_cost = self._costs(new_text, meta_json)
                old = mem.drop(entry_id)
                mem.install(
                    entry_id, new_text, meta_json=meta_json, meta_cost=meta_cost, text_tokens=text_tokens,
                    created=old.created, vector=old.vector if text is None else vector,
                )  # fmt: skip

                def undo() -> None:
                    mem.drop(entry_id)
                    mem.reinstall(entry_id, old_text, old)

                await self._make_room(agent, mem, entry_id, undo=undo)
                mem.tracker.record(entry_id, self._clock())
                return mem.snapshot(agent, entry_id)

    async def remove(self, agent: str, entry_id: str, *, actor: str) -> None:
        """Delete the entry, from RAM and from the store."""
        async with self._deadline(agent):
            await self._authorize(actor, agent, "delete")
            async with self._locked(agent) as mem:
                self._known(mem, agent, entry_id)
                if entry_id in mem.in_store:
                    # The stored copy goes first: if deleting it fails, the entry is still whole.
                    await self._store_call(agent, "delete", entry_id, missing_ok=True)
                    mem.in_store.discard(entry_id)
                mem.forget(entry_id)

    async def recent(self, agent: str, n: int, *, actor: str) -> list[MemoryEntry]:
        """The ``n`` most recently created or accessed entries, newest first.

        Listing is not an access: it changes no recency and pages nothing in (an evicted entry
        is read from the store and returned with ``resident=False``).
        """
        async with self._deadline(agent):
            await self._authorize(actor, agent, "read")
            _require_count(n, "n")
            async with self._locked(agent) as mem:
                out = []
                for entry_id in mem.tracker.by_recency([*mem.resident, *mem.evicted])[:n]:
                    if entry_id in mem.resident:
                        out.append(mem.snapshot(agent, entry_id))
                    else:
                        out.append(mem.from_stored(agent, entry_id, await self._load(agent, mem, entry_id)))
                return out

    async def search(
        self, agent: str, query: str, *, actor: str, k: int = 5, mode: SearchMode = "keyword"
    ) -> list[SearchHit]:
        """The ``k`` best entries for ``query`` (BM25, or cosine with an embedder), best first.

        Evicted entries are searched too; each hit counts as an access and is paged back in.
        """
        async with self._deadline(agent):
            await self._authorize(actor, agent, "read")
            query = _require_text(query, "query")
            _require_count(k, "k")
            if mode not in ("keyword", "semantic"):
                raise InvalidRequestError(f"mode must be 'keyword' or 'semantic', got {mode!r}", field="mode")
            qvec = None
            if mode == "semantic":
                if self._embedder is None:
                    raise ConfigError(
                        "semantic search needs an embedder; none is configured", field="embedder"
                    )
                qvec = await self._embed_one(query, agent)
            async with self._locked(agent) as mem:
                ranked = mem.index.search(query, k) if qvec is None else mem.semantic_rank(qvec, k)
                return [
                    SearchHit(entry=await self._access(agent, mem, entry_id), score=score)
                    for entry_id, score in ranked
                ]

    async def stats(self, agent: str) -> MemoryStats:
        """Usage, budget and counters of ``agent``'s memory (for the kernel: no access check)."""
        _require_text(agent, "agent")
        mem = self._agents.get(agent) or AgentMemory(self.k, self.unit)
        return MemoryStats(
            agent=agent,
            unit=self.unit,
            used=mem.usage(),
            budget=self.budget,
            limit=self.limit,
            resident=len(mem.resident),
            evicted=len(mem.evicted),
            evictions=mem.evictions,
            page_ins=mem.page_ins,
            raw_bytes=mem.trie.raw_bytes,
            stored_bytes=mem.trie.stored_bytes,
            compression_ratio=mem.trie.compression_ratio,
        )

    # ---- deadlines, locks, access checks, costs ----------------------------------------------

    @asynccontextmanager
    async def _deadline(self, agent: object) -> AsyncIterator[None]:
        """Bound a whole operation; the caller gets ``DeadlineExceededError``, never a hang."""
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                yield
        except TimeoutError as e:
            if deadline.expired():
                raise DeadlineExceededError(
                    f"memory operation took longer than {self.timeout:g} s",
                    agent=agent if isinstance(agent, str) else None,
                ) from e
            raise

    @asynccontextmanager
    async def _locked(self, agent: str) -> AsyncIterator[AgentMemory]:
        """The agent's memory, created on first use, with its lock held."""
        mem = self._agents.get(agent)
        if mem is None:
            mem = self._agents[agent] = AgentMemory(self.k, self.unit)
        async with mem.lock:
            if not mem.recovered:
                await self._recover(agent, mem)
            yield mem

    async def _recover(self, agent: str, mem: AgentMemory) -> None:
        """Register the entries a previous kernel evicted to the store, so get/search find them.

        Each entry is registered whole or not at all; if listing or a read fails, the next
        operation tries again (skipping what is registered already). A corrupt copy is skipped.
        """
        try:
            keys = await self._store.list(agent, actor=agent, prefix=STORE_PREFIX)
        except AIOSError:
            raise
        except Exception as e:
            raise KernelInternalError(
                f"memory store failed to list {STORE_PREFIX}: {e!r}", agent=agent
            ) from e
        for key in keys:
            entry_id = key[len(STORE_PREFIX) :]
            if not key.startswith(STORE_PREFIX) or not entry_id or entry_id in mem:
                continue
            try:
                data = await self._load(agent, mem, entry_id)
            except KernelInternalError as e:
                _log.warning("memory: skipping stored entry %s/%s: %s", agent, entry_id, e)
                continue
            created, history = data.get("created"), data.get("history")
            when = float(created) if _finite(created) else self._clock()
            if not isinstance(history, list) or not all(_finite(t) for t in history):
                history = []
            mem.restore_evicted(entry_id, data["text"], when, [float(t) for t in history])
        mem.recovered = True

    async def _authorize(self, actor: str, owner: str, op: MemoryOp) -> None:
        _require_text(actor, "actor")
        _require_text(owner, "agent")
        try:
            result = self._check(actor, owner, op)
            if inspect.isawaitable(result):
                await result
        except AIOSError:
            raise
        except Exception as e:
            raise KernelInternalError(f"memory access check failed: {e!r}", agent=actor) from e

    def _costs(self, text: str, meta_json: str) -> tuple[int, int]:
        """(tokens of the text, metadata cost in the budget unit); refuses what can never fit."""
        if self.unit == "bytes":
            text_tokens, text_cost = 0, len(text.encode("utf-8"))
            meta_cost = len(meta_json.encode("utf-8"))
        else:
            text_tokens = text_cost = self._tokens(text)
            meta_cost = self._tokens(meta_json) if meta_json else 0
        if text_cost + meta_cost > self.limit:
            raise InvalidRequestError(
                f"entry of {text_cost + meta_cost} {self.unit} exceeds the memory limit "
                f"({self.limit:g} {self.unit} = threshold x budget)",
                field="text",
            )
        return text_tokens, meta_cost

    def _tokens(self, text: str) -> int:
        n = self._count_tokens(text)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"token_counter returned {n!r}, not a count", field="token_counter")
        return n

    @staticmethod
    def _known(mem: AgentMemory, agent: str, entry_id: str) -> None:
        if not isinstance(entry_id, str):
            raise InvalidRequestError(f"entry_id must be a string, got {entry_id!r}", field="entry_id")
        if entry_id not in mem:
            raise MemoryEntryNotFoundError(f"no memory entry {entry_id!r}", field="entry_id", agent=agent)

    # ---- eviction and paging -----------------------------------------------------------------

    async def _access(self, agent: str, mem: AgentMemory, entry_id: str) -> MemoryEntry:
        """Page ``entry_id`` in if needed, count the access, return a copy."""
        self._known(mem, agent, entry_id)
        await self._page_in(agent, mem, entry_id)
        mem.tracker.record(entry_id, self._clock())
        return mem.snapshot(agent, entry_id)

    async def _make_room(
        self, agent: str, mem: AgentMemory, pinned: str, *, undo: Callable[[], None]
    ) -> None:
        """Evict others in LRU-K order until usage is within the limit; on any failure, ``undo``."""
        try:
            while mem.usage() > self.limit:
                victim = mem.tracker.victim(exclude=(pinned,))
                if victim is None:
                    # Unreachable while every entry alone fits the limit (``_costs`` checks that).
                    raise KernelInternalError("memory cannot get within its limit", agent=agent)
                await self._evict(agent, mem, victim)
        except BaseException:
            undo()
            raise

    async def _evict(self, agent: str, mem: AgentMemory, entry_id: str) -> None:
        payload = mem.payload(entry_id)
        # Marked before the write: a write cancelled half way may still have landed.
        mem.in_store.add(entry_id)
        await self._store_call(agent, "write", entry_id, payload=payload)
        mem.mark_evicted(entry_id)

    async def _load(self, agent: str, mem: AgentMemory, entry_id: str) -> dict[str, Any]:
        """The stored copy of an evicted entry, checked."""
        try:
            raw = await self._store_call(agent, "read", entry_id)
        except KeyNotFoundError as e:
            # Deleted behind our back: forget it, or every search that finds it would fail.
            mem.forget(entry_id)
            mem.in_store.discard(entry_id)
            raise KernelInternalError(
                f"evicted memory entry {entry_id!r} was missing from the store and is lost", agent=agent
            ) from e
        try:
            data = json.loads(raw)
            ok = (
                isinstance(data, dict)
                and data.get("id") == entry_id
                and isinstance(data.get("text"), str)
                and isinstance(data.get("metadata"), dict)
            )
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise KernelInternalError(f"stored memory entry {entry_id!r} is corrupt", agent=agent)
        result: dict[str, Any] = data
        return result

    async def _page_in(self, agent: str, mem: AgentMemory, entry_id: str) -> None:
        if entry_id in mem.resident:
            return
        data = await self._load(agent, mem, entry_id)
        stub = mem.evicted[entry_id]
        meta_json = _metadata_json(data["metadata"])
        text_tokens = self._tokens(data["text"]) if self.unit == "tokens" else 0
        if self.unit == "bytes":
            meta_cost = len(meta_json.encode("utf-8"))
        else:
            meta_cost = self._tokens(meta_json) if meta_json else 0
        mem.install(
            entry_id, data["text"], meta_json=meta_json, meta_cost=meta_cost,
            text_tokens=text_tokens, created=stub.created, vector=stub.vector,
        )  # fmt: skip
        await self._make_room(agent, mem, entry_id, undo=lambda: mem.unevict(entry_id, stub))
        mem.page_ins += 1
        try:
            await self._store_call(agent, "delete", entry_id, missing_ok=True)
            mem.in_store.discard(entry_id)
        except Exception as e:
            # The entry is safely in RAM; a stale stored copy is overwritten or deleted later.
            _log.warning("memory: could not delete the stored copy of %s/%s: %r", agent, entry_id, e)

    async def _store_call(
        self,
        agent: str,
        op: Literal["write", "read", "delete"],
        entry_id: str,
        *,
        payload: str = "",
        missing_ok: bool = False,
    ) -> bytes:
        """One store call on the entry's key, as the owner; foreign errors become ours."""
        key = STORE_PREFIX + entry_id
        try:
            if op == "write":
                await self._store.write(agent, key, payload, actor=agent)
            elif op == "delete":
                await self._store.delete(agent, key, actor=agent)
            else:
                return await self._store.read(agent, key, actor=agent)
        except KeyNotFoundError:
            if not missing_ok:
                raise
        except AIOSError:
            raise
        except Exception as e:
            raise KernelInternalError(f"memory store failed to {op} {key}: {e!r}", agent=agent) from e
        return b""

    # ---- embeddings --------------------------------------------------------------------------

    async def _embed_one(self, text: str, agent: str) -> array[float] | None:
        if self._embedder is None:
            return None
        try:
            vectors = await asyncio.to_thread(self._embedder.embed, [text])
        except AIOSError:
            raise
        except Exception as e:
            raise KernelInternalError(f"embedder failed: {e!r}", agent=agent) from e
        if not isinstance(vectors, list) or len(vectors) != 1 or not vectors[0]:
            raise KernelInternalError("embedder returned no vector for the text", agent=agent)
        return array("f", vectors[0])
