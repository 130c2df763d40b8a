"""The storage manager on SQLite: versions, tombstones, rollback, sharing, validation, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aios.clock import FakeClock
from aios.errors import AccessDeniedError, ConfigError, InvalidRequestError
from aios.managers.access import AccessManager
from aios.managers.confirm import AllowListConfirmer, CallbackConfirmer, ConfirmRule
from aios.managers.storage import (
    KeyNotFoundError,
    SQLiteStorage,
    StorageBackend,
    StorageError,
    StorageManager,
    VersionInfo,
)

Factory = Callable[..., Awaitable[tuple[StorageManager, AccessManager, FakeClock]]]


@pytest.fixture
async def make_storage(tmp_path: Path) -> AsyncIterator[Factory]:
    """``make_storage(**access_knobs)``: a manager on a fresh SQLite file and a fake clock at 1000."""
    made: list[StorageManager] = []

    async def factory(
        *, max_value_bytes: int = 1024, **access_knobs: Any
    ) -> tuple[StorageManager, AccessManager, FakeClock]:
        clock = FakeClock(1000.0)
        access = AccessManager(clock=clock.now, **access_knobs)
        backend = SQLiteStorage(tmp_path / f"store{len(made)}.sqlite", synchronous="NORMAL")
        manager = StorageManager(backend, access, clock=clock.now, max_value_bytes=max_value_bytes)
        made.append(manager)
        return manager, access, clock

    yield factory
    for manager in made:
        await manager.close()


# -- versions ---------------------------------------------------------------------------------------


async def test_every_write_adds_a_version_and_old_versions_stay_readable(make_storage: Factory) -> None:
    store, _, clock = await make_storage()
    assert await store.write(None, "k", b"one", actor="a") == 1
    clock.advance(1)
    assert await store.write("a", "k", "two", actor="a") == 2
    assert await store.read(None, "k", actor="a") == b"two"
    assert await store.read(None, "k", actor="a", version=1) == b"one"
    assert await store.versions(None, "k", actor="a") == [
        VersionInfo(version=1, time=1000.0, size=3, deleted=False, writer="a"),
        VersionInfo(version=2, time=1001.0, size=3, deleted=False, writer="a"),
    ]


async def test_namespaces_of_different_owners_are_separate(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", "mine", actor="a")
    assert await store.write(None, "k", "yours", actor="b") == 1
    assert await store.read(None, "k", actor="a") == b"mine"
    assert await store.read(None, "k", actor="b") == b"yours"


async def test_str_values_are_stored_as_utf8(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", "héllo ✓", actor="a")
    assert await store.read(None, "k", actor="a") == "héllo ✓".encode()


async def test_missing_key_or_version_raises_key_not_found(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    with pytest.raises(KeyNotFoundError) as info:
        await store.read(None, "nope", actor="a")
    assert (info.value.owner, info.value.key, info.value.version) == ("a", "nope", None)
    assert isinstance(info.value, KeyError)
    await store.write(None, "k", b"v", actor="a")
    with pytest.raises(KeyNotFoundError) as info:
        await store.read(None, "k", actor="a", version=2)
    assert info.value.version == 2
    with pytest.raises(KeyNotFoundError):
        await store.versions(None, "nope", actor="a")


# -- delete and rollback ----------------------------------------------------------------------------


async def test_delete_writes_a_tombstone_and_keeps_history(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"v1", actor="a")
    assert await store.delete(None, "k", actor="a") == 2
    with pytest.raises(KeyNotFoundError, match="deleted"):
        await store.read(None, "k", actor="a")
    assert await store.read(None, "k", actor="a", version=1) == b"v1"
    history = await store.versions(None, "k", actor="a")
    assert [(v.version, v.deleted, v.size) for v in history] == [(1, False, 2), (2, True, 0)]
    assert await store.list(None, actor="a") == []
    with pytest.raises(KeyNotFoundError):
        await store.delete(None, "k", actor="a")


async def test_write_after_delete_continues_the_numbering(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"v1", actor="a")
    await store.delete(None, "k", actor="a")
    assert await store.write(None, "k", b"v3", actor="a") == 3
    assert await store.read(None, "k", actor="a") == b"v3"


async def test_rollback_to_a_version_writes_a_new_equal_version(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    for value in (b"a", b"b", b"c"):
        await store.write(None, "k", value, actor="a")
    assert await store.rollback(None, "k", actor="a", version=1) == 4
    assert await store.read(None, "k", actor="a") == b"a"
    assert [await store.read(None, "k", actor="a", version=v) for v in (1, 2, 3, 4)] == [
        b"a",
        b"b",
        b"c",
        b"a",
    ]


async def test_rollback_to_a_time_uses_the_version_live_at_that_time(make_storage: Factory) -> None:
    store, _, clock = await make_storage()
    await store.write(None, "k", b"at-1000", actor="a")
    clock.advance(10)
    await store.write(None, "k", b"at-1010", actor="a")
    clock.advance(10)
    await store.write(None, "k", b"at-1020", actor="a")
    await store.rollback(None, "k", actor="a", at_time=1015.0)
    assert await store.read(None, "k", actor="a") == b"at-1010"
    await store.rollback(None, "k", actor="a", at_time=1010.0)
    assert await store.read(None, "k", actor="a") == b"at-1010"
    await store.rollback(None, "k", actor="a", at_time=1009.9)
    assert await store.read(None, "k", actor="a") == b"at-1000"


async def test_rollback_to_before_the_key_existed_deletes_it(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"v", actor="a")
    version = await store.rollback(None, "k", actor="a", at_time=999.0)
    assert (await store.versions(None, "k", actor="a"))[-1] == VersionInfo(version, 1000.0, 0, True, "a")
    assert await store.list(None, actor="a") == []


async def test_rollback_undoes_a_delete(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"precious", actor="a")
    await store.delete(None, "k", actor="a")
    assert await store.rollback(None, "k", actor="a") == 3
    assert await store.read(None, "k", actor="a") == b"precious"
    assert await store.list(None, actor="a") == ["k"]


async def test_rollback_without_a_target_undoes_the_last_write(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"good", actor="a")
    await store.write(None, "k", b"oops", actor="a")
    await store.rollback(None, "k", actor="a")
    assert await store.read(None, "k", actor="a") == b"good"


async def test_bad_rollback_arguments_are_typed_errors(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "k", b"v", actor="a")
    with pytest.raises(InvalidRequestError) as info:
        await store.rollback(None, "k", actor="a", version=1, at_time=1.0)
    assert info.value.field == "at_time"
    with pytest.raises(InvalidRequestError) as info:
        await store.rollback(None, "k", actor="a", version=0)
    assert info.value.field == "version"
    with pytest.raises(InvalidRequestError) as info:
        await store.rollback(None, "k", actor="a", at_time=float("nan"))
    assert info.value.field == "at_time"
    with pytest.raises(KeyNotFoundError) as nf:
        await store.rollback(None, "k", actor="a", version=5)
    assert nf.value.version == 5
    with pytest.raises(KeyNotFoundError):
        await store.rollback(None, "other", actor="a")


# -- list -------------------------------------------------------------------------------------------


async def test_list_returns_live_keys_under_the_prefix_sorted(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    for key in ("docs/b", "docs/a", "doc", "notes/x", "docs/c", "docs%", "docs_"):
        await store.write(None, key, b"v", actor="a")
    await store.delete(None, "docs/c", actor="a")
    assert await store.list(None, actor="a", prefix="docs/") == ["docs/a", "docs/b"]
    assert await store.list(None, actor="a", prefix="doc") == ["doc", "docs%", "docs/a", "docs/b", "docs_"]
    assert await store.list(None, actor="a") == ["doc", "docs%", "docs/a", "docs/b", "docs_", "notes/x"]
    assert await store.list(None, actor="a", prefix="zzz") == []


# -- sharing and access -----------------------------------------------------------------------------


async def test_read_is_denied_before_share_allowed_after_and_denied_after_unshare(
    make_storage: Factory,
) -> None:
    store, access, _ = await make_storage()
    await store.write(None, "k", b"secret", actor="a")
    with pytest.raises(AccessDeniedError, match="'b' may not read key 'k' of 'a''s storage"):
        await store.read("a", "k", actor="b")
    await store.share(None, None, actor="a", with_agent="b")
    assert await store.read("a", "k", actor="b") == b"secret"
    assert await store.list("a", actor="b") == ["k"]
    await store.unshare(None, None, actor="a", with_agent="b")
    with pytest.raises(AccessDeniedError):
        await store.read("a", "k", actor="b")
    assert [r.decision for r in access.audit_log(limit=None) if r.actor == "b"] == [
        "deny",
        "allow",
        "allow",
        "deny",
    ]


async def test_prefix_share_covers_keys_and_listing_under_that_prefix_only(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.write(None, "docs/1", b"d", actor="a")
    await store.write(None, "diary", b"x", actor="a")
    await store.share("a", "docs/", actor="a", with_agent="b", ops=["read"])
    assert await store.read("a", "docs/1", actor="b") == b"d"
    assert await store.list("a", actor="b", prefix="docs/") == ["docs/1"]
    with pytest.raises(AccessDeniedError):
        await store.read("a", "diary", actor="b")
    with pytest.raises(AccessDeniedError):
        await store.list("a", actor="b")


async def test_missing_key_in_another_namespace_is_denied_not_revealed(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    with pytest.raises(AccessDeniedError):
        await store.read("a", "does-not-exist", actor="b")


async def test_only_the_owner_may_share(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    await store.share("a", None, actor="a", with_agent="b", ops=["read", "write"])
    with pytest.raises(AccessDeniedError):
        await store.share("a", None, actor="b", with_agent="c")


async def test_grantee_may_create_but_not_overwrite_or_delete_without_confirmation(
    make_storage: Factory,
) -> None:
    store, access, _ = await make_storage()
    await store.write(None, "mine", b"v1", actor="a")
    await store.share("a", None, actor="a", with_agent="b", ops=["write", "delete", "read"])
    assert await store.write("a", "new", b"from b", actor="b") == 1
    with pytest.raises(AccessDeniedError, match="overwrite key 'mine'"):
        await store.write("a", "mine", b"clobber", actor="b")
    assert [(r.decision, r.op) for r in access.audit_log(limit=2)] == [
        ("asked", "overwrite"),
        ("refused", "overwrite"),
    ]
    with pytest.raises(AccessDeniedError):
        await store.delete("a", "mine", actor="b")
    assert await store.read("a", "mine", actor="a") == b"v1"
    assert len(await store.versions("a", "mine", actor="a")) == 1


async def test_allow_list_confirmer_lets_automation_overwrite_matching_keys(make_storage: Factory) -> None:
    confirmer = AllowListConfirmer([ConfirmRule(agent="b", op="overwrite", key="cache/*")])
    store, access, _ = await make_storage(confirmer=confirmer)
    await store.write(None, "cache/x", b"old", actor="a")
    await store.write(None, "keep", b"old", actor="a")
    await store.share("a", None, actor="a", with_agent="b", ops=["write"])
    assert await store.write("a", "cache/x", b"new", actor="b") == 2
    assert access.audit_log(limit=1)[0].decision == "confirmed"
    with pytest.raises(AccessDeniedError):
        await store.write("a", "keep", b"new", actor="b")


async def test_confirm_own_makes_the_owners_overwrites_ask(make_storage: Factory) -> None:
    answers = iter([False, True])
    store, _, _ = await make_storage(confirm_own=True, confirmer=CallbackConfirmer(lambda r: next(answers)))
    await store.write(None, "k", b"v1", actor="a")  # a new key is not destructive: not asked
    with pytest.raises(AccessDeniedError):
        await store.write(None, "k", b"v2", actor="a")
    assert await store.write(None, "k", b"v2", actor="a") == 2


async def test_auditor_group_reads_every_namespace_but_cannot_write(make_storage: Factory) -> None:
    store, _, _ = await make_storage(groups={"auditors": ["storage:read"]}, members={"aud": ["auditors"]})
    await store.write(None, "k", b"v", actor="a")
    assert await store.read("a", "k", actor="aud") == b"v"
    assert await store.list("a", actor="aud") == ["k"]
    with pytest.raises(AccessDeniedError):
        await store.write("a", "k2", b"v", actor="aud")


# -- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["", "a\x00b", "x" * 1025, "bad\ud800", "line\nbreak", 7, None])
async def test_bad_keys_raise_invalid_request_naming_key(make_storage: Factory, key: Any) -> None:
    store, _, _ = await make_storage()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.write(None, key, b"v", actor="a"),
        lambda: store.read(None, key, actor="a"),
        lambda: store.delete(None, key, actor="a"),
        lambda: store.versions(None, key, actor="a"),
        lambda: store.rollback(None, key, actor="a"),
    ]
    for call in calls:
        with pytest.raises(InvalidRequestError) as info:
            await call()
        assert info.value.field == "key"


@pytest.mark.parametrize("value", [b"x" * 1025, "é" * 513, 42, None, ["v"], "bad\udc80"])
async def test_bad_values_raise_invalid_request_naming_value(make_storage: Factory, value: Any) -> None:
    store, _, _ = await make_storage(max_value_bytes=1024)
    with pytest.raises(InvalidRequestError) as info:
        await store.write(None, "k", value, actor="a")
    assert info.value.field == "value"
    with pytest.raises(KeyNotFoundError):
        await store.read(None, "k", actor="a")


async def test_value_at_the_limit_is_accepted(make_storage: Factory) -> None:
    store, _, _ = await make_storage(max_value_bytes=1024)
    await store.write(None, "k", bytearray(b"x" * 1024), actor="a")  # type: ignore[arg-type]
    assert len(await store.read(None, "k", actor="a")) == 1024


@pytest.mark.parametrize(
    ("owner", "actor", "field"), [("", "a", "owner"), ("a", "", "actor"), (None, None, "actor")]
)
async def test_bad_owner_or_actor_names_the_field(
    make_storage: Factory, owner: Any, actor: Any, field: str
) -> None:
    store, _, _ = await make_storage()
    with pytest.raises(InvalidRequestError) as info:
        await store.write(owner, "k", b"v", actor=actor)
    assert info.value.field == field


async def test_bad_share_arguments_name_the_field(make_storage: Factory) -> None:
    store, _, _ = await make_storage()
    with pytest.raises(InvalidRequestError) as info:
        await store.share(None, "a\x00", actor="a", with_agent="b")
    assert info.value.field == "key_prefix_or_all"
    with pytest.raises(InvalidRequestError) as info:
        await store.share(None, None, actor="a", with_agent="b", ops=["share"])
    assert info.value.field == "ops"
    with pytest.raises(InvalidRequestError) as info:
        await store.share(None, None, actor="a", with_agent="")
    assert info.value.field == "with_agent"


def test_bad_manager_configuration_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        StorageManager(SQLiteStorage(tmp_path / "s.sqlite"), AccessManager(), max_value_bytes=0)
    assert info.value.field == "max_value_bytes"
    with pytest.raises(ConfigError) as info:
        StorageManager(object(), AccessManager())  # type: ignore[arg-type]
    assert info.value.field == "backend"
    with pytest.raises(ConfigError) as info:
        SQLiteStorage(tmp_path / "s.sqlite", synchronous="OFF")  # type: ignore[arg-type]
    assert info.value.field == "synchronous"


# -- concurrency and the backend --------------------------------------------------------------------


async def test_concurrent_writers_get_every_version_numbered_without_gaps(make_storage: Factory) -> None:
    store, _, _ = await make_storage()

    async def writer(i: int) -> list[int]:
        return [await store.write(None, "hot", f"{i}-{j}", actor="a") for j in range(5)]

    results = await asyncio.gather(*(writer(i) for i in range(40)))
    numbers = sorted(v for r in results for v in r)
    assert numbers == list(range(1, 201))
    assert all(r == sorted(r) for r in results)
    values = {await store.read(None, "hot", actor="a", version=v) for v in numbers}
    assert values == {f"{i}-{j}".encode() for i in range(40) for j in range(5)}


async def test_concurrent_confirmed_writers_compete_without_losing_versions(make_storage: Factory) -> None:
    # A grantee's writes go through the compare-and-set path (it may become an overwrite).
    store, _, _ = await make_storage(confirmer=CallbackConfirmer(lambda r: True))
    await store.share("a", None, actor="a", with_agent="b", ops=["write"])
    versions = await asyncio.gather(*(store.write("a", "hot", str(i), actor="b") for i in range(30)))
    assert sorted(versions) == list(range(1, 31))


async def test_sqlite_storage_implements_the_backend_protocol_and_refuses_use_after_close(
    tmp_path: Path,
) -> None:
    backend = SQLiteStorage(tmp_path / "s.sqlite")
    assert isinstance(backend, StorageBackend)
    await backend.append("a", "k", b"v", writer="a", time=1.0)
    await backend.close()
    await backend.close()
    with pytest.raises(StorageError, match="closed"):
        await backend.head("a", "k")


async def test_database_is_in_wal_mode_and_reopens_with_the_data(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    async with SQLiteStorage(path) as backend:
        await backend.append("a", "k", b"v", writer="a", time=1.0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    async with SQLiteStorage(path) as again:
        found = await again.get("a", "k")
    assert found == (VersionInfo(1, 1.0, 1, False, "a"), b"v")


async def test_append_with_a_stale_expected_head_writes_nothing(tmp_path: Path) -> None:
    from aios.managers.storage import VersionConflictError

    async with SQLiteStorage(tmp_path / "s.sqlite") as backend:
        await backend.append("a", "k", b"v1", writer="a", time=1.0)
        with pytest.raises(VersionConflictError) as info:
            await backend.append("a", "k", b"v2", writer="a", time=2.0, expected_head=0)
        assert (info.value.expected, info.value.actual, info.value.retryable) == (0, 1, True)
        assert [v.version for v in await backend.history("a", "k")] == [1]
        assert (await backend.append("a", "k", b"v2", writer="a", time=2.0, expected_head=1)).version == 2
