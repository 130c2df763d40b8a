"""LRUKTracker: the classic LRU-K victim rule, checked on hand-made cases and against a reference."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.errors import ConfigError
from aios.managers.lruk import LRUKTracker


def tracker_with(k: int, accesses: list[tuple[str, float]]) -> LRUKTracker[str]:
    t = LRUKTracker[str](k)
    for key, now in accesses:
        t.record(key, now)
    return t


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_invalid_k_is_a_config_error_naming_k(k: object) -> None:
    with pytest.raises(ConfigError) as e:
        LRUKTracker(k)  # type: ignore[arg-type]
    assert e.value.field == "k"


def test_keys_with_fewer_than_k_accesses_go_first_least_recent_first() -> None:
    # a: twice long ago; b and c: once each, b before c.
    t = tracker_with(2, [("a", 0), ("a", 1), ("b", 10), ("c", 11)])
    assert t.eviction_order() == ["b", "c", "a"]
    assert t.victim() == "b"


def test_victim_is_the_oldest_kth_access_not_the_oldest_last_access() -> None:
    # a was used most recently, but its 2nd most recent use (t=1) is older than b's (t=5).
    t = tracker_with(2, [("a", 0), ("a", 1), ("b", 5), ("b", 6), ("a", 20)])
    assert t.victim() == "a"
    # Plain LRU (k=1) on the same trace picks b, whose last access is older.
    lru = tracker_with(1, [("a", 0), ("a", 1), ("b", 5), ("b", 6), ("a", 20)])
    assert lru.victim() == "b"


def test_equal_clock_readings_are_ordered_by_access_order() -> None:
    t = tracker_with(2, [("a", 0), ("b", 0), ("b", 0), ("a", 0)])
    # Both have two accesses at t=0; a's 2nd most recent access came first.
    assert t.eviction_order() == ["a", "b"]
    t2 = tracker_with(2, [("x", 3), ("y", 3)])
    assert t2.eviction_order() == ["x", "y"]


def test_history_keeps_only_the_k_most_recent_times_newest_first() -> None:
    t = tracker_with(3, [("a", 1), ("a", 2), ("a", 3), ("a", 4)])
    assert t.history("a") == (4, 3, 2)
    assert t.history("missing") == ()


def test_backward_distance_is_infinite_below_k_accesses() -> None:
    t = tracker_with(2, [("a", 1)])
    assert t.backward_distance("a", 10) == math.inf
    t.record("a", 4)
    assert t.backward_distance("a", 10) == 9
    assert t.backward_distance("unknown", 10) == math.inf


def test_candidates_restrict_the_order_and_unknown_candidates_are_ignored() -> None:
    t = tracker_with(2, [("a", 0), ("b", 1), ("c", 2)])
    assert t.eviction_order(["c", "zzz", "a"]) == ["a", "c"]
    assert t.eviction_order([]) == []


def test_excluded_keys_are_passed_over_and_stay_candidates() -> None:
    t = tracker_with(2, [("a", 0), ("b", 1), ("c", 2)])
    assert t.victim(exclude={"a"}) == "b"
    assert t.victim(exclude={"a", "b", "c"}) is None
    assert t.victim() == "a"


def test_keys_that_are_not_evictable_keep_their_history_but_are_never_victims() -> None:
    t = tracker_with(2, [("a", 0), ("b", 1)])
    t.set_evictable("a", False)
    assert not t.is_evictable("a")
    assert t.victim() == "b"
    assert t.eviction_order() == ["b"]
    t.record("a", 5)  # an access while evicted still counts for its history
    assert t.history("a") == (5, 0)
    assert t.victim() == "b"
    t.set_evictable("a", True)
    # a now has two accesses, b one: b still goes first.
    assert t.eviction_order() == ["b", "a"]
    t.set_evictable("unknown", True)
    assert "unknown" not in t


def test_forget_removes_the_history() -> None:
    t = tracker_with(2, [("a", 0), ("b", 1)])
    t.forget("a")
    t.forget("never-seen")
    assert "a" not in t
    assert len(t) == 1
    assert t.eviction_order() == ["b"]
    assert t.victim() == "b"


def test_by_recency_orders_by_last_access_newest_first() -> None:
    t = tracker_with(2, [("a", 0), ("b", 1), ("c", 2), ("a", 3)])
    assert t.by_recency() == ["a", "c", "b"]
    assert t.by_recency(["b", "c"]) == ["c", "b"]


def reference_order(k: int, log: list[tuple[str, float]]) -> list[str]:
    """LRU-K from the full access log, as the paper defines it (no incremental state)."""
    keys = sorted({key for key, _ in log})
    positions = {key: [i for i, (kk, _) in enumerate(log) if kk == key] for key in keys}

    def rank(key: str) -> tuple[int, tuple[float, int], tuple[float, int]]:
        pos = positions[key][::-1]  # most recent first
        last = (log[pos[0]][1], pos[0])
        if len(pos) < k:
            return (0, (0.0, 0), last)
        return (1, (log[pos[k - 1]][1], pos[k - 1]), last)

    return sorted(keys, key=rank)


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=4),
    steps=st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(min_value=0, max_value=3)), min_size=1, max_size=40
    ),
)
def test_eviction_order_matches_the_definition_on_random_traces(k: int, steps: list[tuple[str, int]]) -> None:
    # Time moves forward by 0..3 per access, so equal readings (ties) are frequent.
    log: list[tuple[str, float]] = []
    now = 0.0
    for key, dt in steps:
        now += dt
        log.append((key, now))
    t = tracker_with(k, log)
    assert t.eviction_order() == reference_order(k, log)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["record", "record", "record", "forget", "out", "in", "victim"]),
            st.sampled_from("abcdefgh"),
            st.integers(min_value=0, max_value=2),
        ),
        max_size=120,
    )
)
def test_the_heap_victim_always_equals_the_head_of_the_sorted_order(ops: list[tuple[str, str, int]]) -> None:
    # Many accesses per key make stale heap items and heap rebuilds happen.
    t = LRUKTracker[str](2)
    now = 0.0
    for op, key, dt in ops:
        now += dt
        if op == "record":
            t.record(key, now)
        elif op == "forget":
            t.forget(key)
        elif op in ("out", "in"):
            t.set_evictable(key, op == "in")
        else:
            order = [k for k in t.eviction_order() if k != key]
            assert t.victim(exclude={key}) == (order[0] if order else None)
        order = t.eviction_order()
        assert t.victim() == (order[0] if order else None)
