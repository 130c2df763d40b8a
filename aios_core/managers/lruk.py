"""LRU-K replacement (O'Neil, O'Neil & Weikum, SIGMOD 1993): evict by the K-th most recent access.

The tracker keeps access histories and answers "which key goes first"; it knows nothing of what
the keys stand for. It retains the history of keys that are not evictable right now (evicted
ones: the paper's "retained information"), so a key that comes back is judged on its recent
past, not as new. The paper's correlated-reference period is not modelled: every access counts.

Finding a victim is O(log n) amortised: evictable keys sit in a min-heap ordered by their
eviction key; an access pushes a fresh item and the superseded one is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Container, Hashable, Iterable
from typing import Generic, TypeVar

from aios.errors import ConfigError

K = TypeVar("K", bound=Hashable)

# An access is (time, sequence number): the sequence number orders accesses that share a clock
# reading (a coarse or fake clock), so the order of victims is always total and deterministic.
_Access = tuple[float, int]
_EvictionKey = tuple[int, _Access, _Access]


class LRUKTracker(Generic[K]):
    """Access histories of keys, and the LRU-K order in which to evict the evictable ones."""

    def __init__(self, k: int = 2):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}", field="k")
        self.k = k
        self._hist: dict[K, list[_Access]] = {}
        self._seq = 0
        # Evictable keys -> the stamp of their one live heap item; other heap items are stale.
        self._live: dict[K, int] = {}
        self._heap: list[tuple[_EvictionKey, int, K]] = []
        self._stamps = 0

    def __contains__(self, key: object) -> bool:
        return key in self._hist

    def __len__(self) -> int:
        return len(self._hist)

    def record(self, key: K, now: float) -> None:
        """Note one access to ``key`` at ``now``; a key seen for the first time is evictable."""
        self._seq += 1
        h = self._hist.get(key)
        if h is None:
            h = self._hist[key] = []
            self._live[key] = -1  # evictable; the push below gives it its heap item
        h.insert(0, (now, self._seq))
        # Only the K most recent accesses decide anything; older ones are dropped to bound memory.
        del h[self.k :]
        if key in self._live:
            self._push(key)

    def forget(self, key: K) -> None:
        """Drop the history of ``key`` (it no longer exists anywhere); unknown keys are ignored."""
        self._hist.pop(key, None)
        self._live.pop(key, None)

    def set_evictable(self, key: K, evictable: bool) -> None:
        """Make a tracked key a candidate for eviction or not (history is kept either way)."""
        if key not in self._hist or evictable == (key in self._live):
            return
        if evictable:
            self._push(key)
        else:
            del self._live[key]

    def is_evictable(self, key: K) -> bool:
        """Whether ``key`` is tracked and a candidate for eviction."""
        return key in self._live

    def history(self, key: K) -> tuple[float, ...]:
        """Access times of ``key``, most recent first, at most K of them; empty if unknown."""
        return tuple(t for t, _ in self._hist.get(key, ()))

    def backward_distance(self, key: K, now: float) -> float:
        """The backward K-distance ``now - t_K``; infinity when ``key`` has fewer than K accesses."""
        h = self._hist.get(key, ())
        if len(h) < self.k:
            return math.inf
        return now - h[self.k - 1][0]

    def victim(self, exclude: Container[K] = ()) -> K | None:
        """The evictable key LRU-K evicts first, leaving out ``exclude``; None when there is none.

        The victim is the key whose K-th most recent access is oldest; keys with fewer than K
        accesses come before all others, and ties are broken by plain LRU (oldest last access).
        """
        heap = self._heap
        skipped = []
        found: K | None = None
        while heap:
            _, stamp, key = heap[0]
            if self._live.get(key) != stamp:
                heapq.heappop(heap)  # superseded by a later access, or no longer evictable
            elif key in exclude:
                skipped.append(heapq.heappop(heap))
            else:
                found = key
                break
        for item in skipped:
            heapq.heappush(heap, item)
        return found

    def eviction_order(self, candidates: Iterable[K] | None = None) -> list[K]:
        """``candidates`` (default: the evictable keys) sorted so that the first is the first victim.

        Same rule as ``victim``, over any tracked keys (unknown candidates are ignored); it sorts
        them all, so it is for inspection and tests, not for the eviction loop.
        """
        keys = self._live.keys() if candidates is None else [c for c in candidates if c in self._hist]
        return sorted(keys, key=self._eviction_key)

    def by_recency(self, candidates: Iterable[K] | None = None) -> list[K]:
        """``candidates`` (default: every tracked key), most recently accessed first."""
        keys = self._hist.keys() if candidates is None else [c for c in candidates if c in self._hist]
        return sorted(keys, key=lambda key: self._hist[key][0], reverse=True)

    def _eviction_key(self, key: K) -> _EvictionKey:
        h = self._hist[key]
        if len(h) < self.k:
            # Infinite backward K-distance: these go first, the least recently used of them first.
            return (0, (0.0, 0), h[0])
        return (1, h[self.k - 1], h[0])

    def _push(self, key: K) -> None:
        self._stamps += 1
        self._live[key] = self._stamps
        heapq.heappush(self._heap, (self._eviction_key(key), self._stamps, key))
        # Stale items pile up with every access; rebuild once they outnumber the live ones.
        if len(self._heap) > 2 * len(self._live) + 64:
            self._heap = [(self._eviction_key(k), s, k) for k, s in self._live.items()]
            heapq.heapify(self._heap)
