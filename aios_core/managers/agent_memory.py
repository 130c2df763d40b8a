"""One agent's memory as the manager keeps it in RAM: entries, accounting, and evicted stubs.

Everything here is synchronous and does no I/O, so each method runs to completion without an
``await`` in the middle: the manager can undo a change exactly, even when it is cancelled.
Resident texts live in a prefix trie (shared prefixes stored once); evicted entries keep only
their index terms, LRU-K history and embedding here, their text and metadata being in the store.
"""

from __future__ import annotations

import asyncio
import json
from array import array
from dataclasses import dataclass
from typing import Any, Literal

from aios.managers.embeddings import cosine
from aios.managers.keyword_index import KeywordIndex
from aios.managers.lruk import LRUKTracker
from aios.managers.prefix_trie import PrefixTrie, TrieRef

__all__ = ["FORMAT", "AgentMemory", "EvictedEntry", "MemoryEntry", "ResidentEntry"]

#: Version of the JSON an evicted entry is stored as.
FORMAT = 1


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """A copy of one memory entry as it was when the operation returned."""

    id: str
    agent: str
    text: str
    metadata: dict[str, Any]
    created: float
    #: Access times, most recent first (the K that LRU-K looks at).
    history: tuple[float, ...]
    #: Whether the entry was in RAM (False: read from the store without paging it in).
    resident: bool = True


@dataclass(slots=True)
class ResidentEntry:
    """An entry in RAM: its text is behind ``ref`` in the agent's trie."""

    created: float
    ref: TrieRef
    meta_json: str  # "" when there is no metadata
    meta_cost: int  # in the budget unit
    text_tokens: int  # 0 when the budget is in bytes
    vector: array[float] | None


@dataclass(slots=True)
class EvictedEntry:
    """What stays in RAM of an evicted entry (its text and metadata are in the store)."""

    created: float
    vector: array[float] | None


class AgentMemory:
    """One agent's entries and accounting; the caller holds ``lock`` around every use.

    Invariant: the tracker's evictable keys are exactly the resident entries that have been
    accessed (an entry being added is resident but untracked until its first access is recorded).
    """

    def __init__(self, k: int, unit: Literal["bytes", "tokens"]):
        self.unit = unit
        self.tracker = LRUKTracker[str](k)
        self.trie = PrefixTrie()
        self.index = KeywordIndex()
        self.resident: dict[str, ResidentEntry] = {}
        self.evicted: dict[str, EvictedEntry] = {}
        # Ids that may have a copy in the store (evicted, or paged in but the delete did not finish).
        self.in_store: set[str] = set()
        self.meta_total = 0
        self.text_tokens = 0
        self.evictions = 0
        self.page_ins = 0
        # Whether the entries a previous kernel left in the store have been registered.
        self.recovered = False
        self.lock = asyncio.Lock()

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self.resident or entry_id in self.evicted

    def usage(self) -> int:
        """What the resident entries cost in the budget unit, shared prefixes counted once."""
        stored = self.trie.stored_bytes
        if self.unit == "bytes":
            return stored + self.meta_total
        # A tokenizer cannot be applied to trie fragments (tokens straddle the cuts), so the
        # compressed token count is the entries' tokens scaled by the trie's byte compression.
        raw = self.trie.raw_bytes
        text = -(-self.text_tokens * stored // raw) if raw else 0
        return text + self.meta_total

    def install(
        self,
        entry_id: str,
        text: str,
        *,
        meta_json: str,
        meta_cost: int,
        text_tokens: int,
        created: float,
        vector: array[float] | None,
    ) -> None:
        """Put an entry in RAM (moving it out of the evicted set if it was there) and index it."""
        self.evicted.pop(entry_id, None)
        # A new entry is not tracked yet and so not evictable: its first access makes it so.
        self.tracker.set_evictable(entry_id, True)
        self.resident[entry_id] = ResidentEntry(
            created=created,
            ref=self.trie.insert(text),
            meta_json=meta_json,
            meta_cost=meta_cost,
            text_tokens=text_tokens,
            vector=vector,
        )
        self.meta_total += meta_cost
        self.text_tokens += text_tokens
        self.index.add(entry_id, text)

    def reinstall(self, entry_id: str, text: str, old: ResidentEntry) -> None:
        """Put back a resident entry exactly as ``old`` described it, with ``text``."""
        self.install(
            entry_id,
            text,
            meta_json=old.meta_json,
            meta_cost=old.meta_cost,
            text_tokens=old.text_tokens,
            created=old.created,
            vector=old.vector,
        )

    def drop(self, entry_id: str) -> ResidentEntry:
        """Take a resident entry out of RAM; its index terms and history stay."""
        rec = self.resident.pop(entry_id)
        self.tracker.set_evictable(entry_id, False)
        self.trie.release(rec.ref)
        self.meta_total -= rec.meta_cost
        self.text_tokens -= rec.text_tokens
        return rec

    def mark_evicted(self, entry_id: str) -> None:
        """The store holds the entry now: free its RAM, keep its terms, history and vector."""
        rec = self.drop(entry_id)
        self.evicted[entry_id] = EvictedEntry(created=rec.created, vector=rec.vector)
        self.evictions += 1

    def restore_evicted(self, entry_id: str, text: str, created: float, history: list[float]) -> None:
        """Register an entry found in the store (left by a previous kernel) as evicted."""
        self.evicted[entry_id] = EvictedEntry(created=created, vector=None)
        self.in_store.add(entry_id)
        self.index.add(entry_id, text)
        for t in sorted(history or [created]):
            self.tracker.record(entry_id, t)
        self.tracker.set_evictable(entry_id, False)

    def unevict(self, entry_id: str, stub: EvictedEntry) -> None:
        """Undo a page-in: back to the evicted state ``stub`` described."""
        self.drop(entry_id)
        self.evicted[entry_id] = stub

    def forget(self, entry_id: str) -> None:
        """Erase every trace of an entry, resident or evicted (not its stored copy)."""
        if entry_id in self.resident:
            self.drop(entry_id)
        else:
            self.evicted.pop(entry_id, None)
        self.index.remove(entry_id)
        self.tracker.forget(entry_id)

    def text(self, entry_id: str) -> str:
        """The text of a resident entry."""
        return self.trie.text(self.resident[entry_id].ref)

    def snapshot(self, agent: str, entry_id: str) -> MemoryEntry:
        """A copy of a resident entry."""
        rec = self.resident[entry_id]
        return MemoryEntry(
            id=entry_id,
            agent=agent,
            text=self.trie.text(rec.ref),
            metadata=json.loads(rec.meta_json) if rec.meta_json else {},
            created=rec.created,
            history=self.tracker.history(entry_id),
        )

    def from_stored(self, agent: str, entry_id: str, data: dict[str, Any]) -> MemoryEntry:
        """A copy of an evicted entry built from its stored JSON (see ``payload``)."""
        return MemoryEntry(
            id=entry_id,
            agent=agent,
            text=data["text"],
            metadata=data["metadata"],
            created=self.evicted[entry_id].created,
            history=self.tracker.history(entry_id),
            resident=False,
        )

    def payload(self, entry_id: str) -> str:
        """The JSON a resident entry is stored as when evicted."""
        rec = self.resident[entry_id]
        return json.dumps(
            {
                "format": FORMAT,
                "id": entry_id,
                "text": self.trie.text(rec.ref),
                "metadata": json.loads(rec.meta_json) if rec.meta_json else {},
                "created": rec.created,
                "history": list(self.tracker.history(entry_id)),
            },
            ensure_ascii=False,
        )

    def semantic_rank(self, qvec: array[float], k: int) -> list[tuple[str, float]]:
        """Up to ``k`` (entry id, cosine similarity) pairs over all entries with a vector, best first."""
        vectors = {i: r.vector for i, r in self.resident.items()}
        vectors.update((i, r.vector) for i, r in self.evicted.items())
        scored = [
            (entry_id, cosine(qvec, vec))
            for entry_id, vec in vectors.items()
            if vec is not None and len(vec) == len(qvec)
        ]
        scored.sort(key=lambda kv: (-kv[1], kv[0]))
        return scored[:k]
