"""The access manager: ownership, groups, grants, confirmation of destructive operations, audit."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aios.errors import AccessDeniedError, ConfigError, InvalidRequestError
from aios.managers.access import GRANTABLE_OPS, OPS, AccessManager, AuditRecord
from aios.managers.confirm import (
    AllowListConfirmer,
    CallbackConfirmer,
    ConfirmationRequest,
    ConfirmRule,
    DenyConfirmer,
    TerminalConfirmer,
)


def make_access(**knobs: Any) -> AccessManager:
    """An access manager on a fixed clock (time 100.0)."""
    knobs.setdefault("clock", lambda: 100.0)
    return AccessManager(**knobs)


def last(access: AccessManager, n: int = 1) -> list[AuditRecord]:
    return access.audit_log(limit=n)


def request(
    op: str = "delete", target: str | None = "k", actor: str = "b", owner: str = "a"
) -> ConfirmationRequest:
    return ConfirmationRequest(actor=actor, owner=owner, kind="storage", op=op, target=target)


# -- ownership, grants, groups ---------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("kind", ["memory", "storage"])
def test_owner_may_do_every_operation_on_own_resources(kind: str, op: str) -> None:
    access = make_access()
    access.check("a", "a", kind, op, target="k")
    assert access.allowed("a", "a", kind, op)
    assert last(access)[0].decision == "allow"
    assert last(access)[0].reason == "owner"


def test_denial_names_who_what_and_whose() -> None:
    access = make_access()
    with pytest.raises(AccessDeniedError) as info:
        access.check("bob", "alice", "storage", "read", target="notes/1")
    assert str(info.value).startswith("agent 'bob' may not read key 'notes/1' of 'alice''s storage")
    assert info.value.agent == "bob"
    assert isinstance(info.value, PermissionError)
    record = last(access)[0]
    assert (record.actor, record.owner, record.kind, record.op, record.target, record.decision) == (
        "bob",
        "alice",
        "storage",
        "read",
        "notes/1",
        "deny",
    )


def test_grant_allows_exactly_the_granted_ops_until_revoked() -> None:
    access = make_access()
    grant = access.grant("a", "a", "storage", "b", ["read"])
    assert grant.ops == frozenset({"read"})
    assert access.allowed("b", "a", "storage", "read", target="x")
    assert not access.allowed("b", "a", "storage", "write", target="x")
    assert not access.allowed("b", "a", "memory", "read")
    assert not access.allowed("c", "a", "storage", "read")
    access.grant("a", "a", "storage", "b", ["write"])
    assert access.grants(owner="a")[0].ops == frozenset({"read", "write"})
    access.revoke("a", "a", "storage", "b", ["read"])
    assert not access.allowed("b", "a", "storage", "read", target="x")
    assert access.allowed("b", "a", "storage", "write", target="x")
    access.revoke("a", "a", "storage", "b")
    assert access.grants() == []


def test_prefix_grant_covers_only_keys_under_the_prefix() -> None:
    access = make_access()
    access.grant("a", "a", "storage", "b", ["read"], prefix="docs/")
    assert access.allowed("b", "a", "storage", "read", target="docs/x")
    assert not access.allowed("b", "a", "storage", "read", target="doc")
    assert not access.allowed("b", "a", "storage", "read", target="notes/x")
    # No target means the whole resource, which only a prefix "" grant covers.
    assert not access.allowed("b", "a", "storage", "read")


def test_revoke_with_prefix_none_removes_every_prefix() -> None:
    access = make_access()
    access.grant("a", "a", "storage", "b", ["read"], prefix="docs/")
    access.grant("a", "a", "storage", "b", ["read"], prefix="notes/")
    access.revoke("a", "a", "storage", "b", ["read"], prefix="docs/")
    assert [g.prefix for g in access.grants()] == ["notes/"]
    access.revoke("a", "a", "storage", "b", prefix=None)
    assert access.grants() == []


def test_only_owner_or_admin_may_grant_and_grantees_cannot_reshare() -> None:
    access = make_access(members={"root": ["admin"]})
    access.grant("a", "a", "storage", "b", ["read", "write"])
    with pytest.raises(AccessDeniedError, match="may not share 'a''s storage"):
        access.grant("b", "a", "storage", "c", ["read"])
    assert last(access)[0].decision == "deny"
    assert not access.allowed("c", "a", "storage", "read")
    access.grant("root", "a", "storage", "c", ["read"])
    assert access.allowed("c", "a", "storage", "read")
    with pytest.raises(AccessDeniedError):
        access.revoke("b", "a", "storage", "c")
    access.revoke("root", "a", "storage", "c")
    assert not access.allowed("c", "a", "storage", "read")


def test_share_is_not_a_grantable_operation() -> None:
    access = make_access()
    with pytest.raises(InvalidRequestError) as info:
        access.grant("a", "a", "storage", "b", ["share"])
    assert info.value.field == "ops"
    with pytest.raises(InvalidRequestError) as info:
        access.grant("a", "a", "storage", "b", [])
    assert info.value.field == "ops"


def test_group_privilege_applies_to_every_owner_of_that_kind_only() -> None:
    access = make_access(groups={"auditors": ["storage:read"]}, members={"aud": ["auditors"]})
    assert access.allowed("aud", "a", "storage", "read")
    assert access.allowed("aud", "z", "storage", "read", target="anything")
    assert not access.allowed("aud", "a", "storage", "write")
    assert not access.allowed("aud", "a", "memory", "read")
    access.check("aud", "a", "storage", "read")
    assert last(access)[0].reason == "group 'auditors'"
    access.remove_member("aud", "auditors")
    assert not access.allowed("aud", "a", "storage", "read")


def test_wildcard_privileges_match_any_kind_or_op() -> None:
    access = make_access(
        groups={"readers": ["*:read"], "gods": ["*:*"]}, members={"r": ["readers"], "g": ["gods"]}
    )
    assert access.allowed("r", "a", "memory", "read") and access.allowed("r", "a", "storage", "read")
    assert not access.allowed("r", "a", "memory", "write")
    assert all(access.allowed("g", "a", "memory", op) for op in OPS)


def test_admin_group_always_carries_share() -> None:
    access = make_access(groups={"admin": ["storage:read"]}, members={"root": ["admin"]})
    assert access.group_privileges("admin") == {"storage:read", "*:share"}
    assert access.allowed("root", "a", "memory", "share")
    assert not access.allowed("root", "a", "memory", "read")


@pytest.mark.parametrize("privilege", ["storage", "disk:read", "storage:chmod", "", "storage:read:x"])
def test_malformed_privilege_is_a_config_error(privilege: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_access(groups={"g": [privilege]})
    assert info.value.field == "groups"


def test_member_of_unknown_group_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        make_access(members={"a": ["nope"]})
    assert info.value.field == "members"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "a", "storage", "read"), "actor"),
        (("a", "", "storage", "read"), "owner"),
        (("a", "a", "disk", "read"), "kind"),
        (("a", "a", "storage", "chmod"), "op"),
    ],
)
def test_bad_check_arguments_name_the_field(args: tuple[str, str, str, str], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        make_access().check(*args)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        ({"always_confirm": ["write"]}, "always_confirm"),
        ({"confirm_timeout": 0}, "confirm_timeout"),
        ({"audit_size": 0}, "audit_size"),
        ({"confirmer": object()}, "confirmer"),
        ({"audit_sink": 42}, "audit_sink"),
    ],
)
def test_bad_configuration_names_the_setting(knobs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_access(**knobs)
    assert info.value.field == field


# -- confirmation -----------------------------------------------------------------------------------


async def test_own_destructive_op_needs_no_confirmation_by_default() -> None:
    asked: list[ConfirmationRequest] = []

    def answer(r: ConfirmationRequest) -> bool:
        asked.append(r)
        return True

    access = make_access(confirmer=CallbackConfirmer(answer))
    await access.confirm_destructive("a", "a", "storage", "delete", "k")
    assert asked == []
    record = last(access)[0]
    assert (record.decision, record.op, record.target) == ("allow", "delete", "k")


async def test_destructive_op_on_other_agents_data_is_refused_by_default_and_audited() -> None:
    access = make_access()
    access.grant("a", "a", "storage", "b", ["write", "delete"])
    with pytest.raises(AccessDeniedError, match="confirmation refused"):
        await access.confirm_destructive("b", "a", "storage", "delete", "k")
    asked, refused = last(access, 2)
    assert (asked.decision, asked.actor, asked.owner, asked.op, asked.target) == (
        "asked",
        "b",
        "a",
        "delete",
        "k",
    )
    assert (refused.decision, refused.reason) == ("refused", "DenyConfirmer answered no")


async def test_confirm_own_makes_own_destructive_ops_ask_the_confirmer() -> None:
    asked: list[ConfirmationRequest] = []

    def answer(r: ConfirmationRequest) -> bool:
        asked.append(r)
        return r.op == "overwrite"

    access = make_access(confirm_own=True, confirmer=CallbackConfirmer(answer))
    await access.confirm_destructive("a", "a", "storage", "overwrite", "k")
    assert last(access)[0].decision == "confirmed"
    with pytest.raises(AccessDeniedError):
        await access.confirm_destructive("a", "a", "memory", "rollback", None)
    assert [r.op for r in asked] == ["overwrite", "rollback"]


async def test_always_confirm_asks_only_for_the_listed_ops_on_own_data() -> None:
    access = make_access(always_confirm=["delete"])
    assert access.needs_confirmation("a", "a", "storage", "delete")
    assert not access.needs_confirmation("a", "a", "storage", "overwrite")
    with pytest.raises(AccessDeniedError):
        await access.confirm_destructive("a", "a", "storage", "delete", "k")
    await access.confirm_destructive("a", "a", "storage", "overwrite", "k")
    assert last(access)[0].decision == "allow"


def test_needs_confirmation_rejects_a_non_destructive_op() -> None:
    with pytest.raises(InvalidRequestError) as info:
        make_access().needs_confirmation("a", "a", "storage", "read")
    assert info.value.field == "op"


async def test_confirmer_that_does_not_answer_in_time_counts_as_refusal() -> None:
    never = asyncio.Event()

    async def wait_forever(r: ConfirmationRequest) -> bool:
        await never.wait()
        return True

    access = make_access(confirmer=CallbackConfirmer(wait_forever), confirm_timeout=0.01)
    with pytest.raises(AccessDeniedError, match="did not answer"):
        await access.confirm_destructive("b", "a", "storage", "delete", "k")
    assert last(access)[0].decision == "refused"


async def test_confirmer_that_raises_fails_closed() -> None:
    def broken(r: ConfirmationRequest) -> bool:
        raise RuntimeError("ui crashed")

    access = make_access(confirmer=CallbackConfirmer(broken))
    with pytest.raises(AccessDeniedError, match="ui crashed"):
        await access.confirm_destructive("b", "a", "storage", "delete", "k")
    assert last(access)[0].reason == "CallbackConfirmer failed: RuntimeError: ui crashed"


async def test_cancelled_confirmation_is_audited_and_propagates() -> None:
    started = asyncio.Event()

    async def slow(r: ConfirmationRequest) -> bool:
        started.set()
        await asyncio.Event().wait()
        return True

    access = make_access(confirmer=CallbackConfirmer(slow))
    task = asyncio.create_task(access.confirm_destructive("b", "a", "storage", "delete", "k"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert last(access)[0].decision == "refused"
    assert "cancelled" in last(access)[0].reason


async def test_allow_list_confirmer_matches_rules_by_glob_and_falls_back() -> None:
    confirmer = AllowListConfirmer(
        [ConfirmRule(agent="bot-*", op="overwrite", key="cache/*"), ConfirmRule(agent="janitor", op="delete")]
    )
    assert await confirmer.confirm(request("overwrite", "cache/x", actor="bot-7"))
    assert not await confirmer.confirm(request("overwrite", "notes/x", actor="bot-7"))
    assert not await confirmer.confirm(request("delete", "cache/x", actor="bot-7"))
    assert await confirmer.confirm(request("delete", "anything", actor="janitor"))
    # A rule with a key pattern does not match a request about the whole resource.
    assert not await confirmer.confirm(request("overwrite", None, actor="bot-7"))
    permissive = AllowListConfirmer([], fallback=CallbackConfirmer(lambda r: True))
    assert await permissive.confirm(request())


def test_allow_list_confirmer_rejects_non_rules() -> None:
    with pytest.raises(InvalidRequestError) as info:
        AllowListConfirmer([("bot", "delete", "*")])  # type: ignore[list-item]
    assert info.value.field == "rules"


async def test_callback_confirmer_accepts_async_callbacks_and_only_true_means_yes() -> None:
    async def yes(r: ConfirmationRequest) -> bool:
        return True

    assert await CallbackConfirmer(yes).confirm(request())
    assert not await CallbackConfirmer(lambda r: "yes").confirm(request())  # type: ignore[arg-type,return-value]
    assert not await DenyConfirmer().confirm(request())


async def test_terminal_confirmer_denies_without_a_tty_and_prints_nothing() -> None:
    out = io.StringIO()
    confirmer = TerminalConfirmer(stdin=io.StringIO("y\n"), stdout=out)
    assert not await confirmer.confirm(request())
    assert out.getvalue() == ""


@pytest.fixture
def tty() -> Iterator[tuple[int, TextIO]]:
    """A pseudo-terminal: (master fd to type into, slave opened as a text stream)."""
    master, slave = os.openpty()
    stream = os.fdopen(slave, "r")
    try:
        yield master, stream
    finally:
        stream.close()
        os.close(master)


@pytest.mark.parametrize(
    ("typed", "expected"), [(b"y\n", True), (b"YES\n", True), (b"n\n", False), (b"\n", False)]
)
async def test_terminal_confirmer_reads_the_answer_from_a_tty(
    tty: tuple[int, TextIO], typed: bytes, expected: bool
) -> None:
    master, stream = tty
    out = io.StringIO()
    os.write(master, typed)
    answer = await TerminalConfirmer(stdin=stream, stdout=out, timeout=30).confirm(request("delete", "k"))
    assert answer is expected
    assert out.getvalue() == "[aios] agent 'b' wants to delete key 'k' in a's storage. Allow? [y/N] "


async def test_terminal_confirmer_refuses_when_nobody_answers_in_time(tty: tuple[int, TextIO]) -> None:
    _, stream = tty
    out = io.StringIO()
    assert not await TerminalConfirmer(stdin=stream, stdout=out, timeout=0.01).confirm(request())
    assert out.getvalue().endswith("no answer; refused.\n")


# -- audit ------------------------------------------------------------------------------------------


def test_audit_ring_is_bounded_and_limit_returns_the_newest() -> None:
    access = make_access(audit_size=3)
    for i in range(5):
        access.check("a", "a", "storage", "read", target=f"k{i}")
    assert [r.target for r in access.audit_log(limit=None)] == ["k2", "k3", "k4"]
    assert [r.target for r in access.audit_log(limit=2)] == ["k3", "k4"]
    assert access.audit_log(limit=0) == []
    with pytest.raises(InvalidRequestError) as info:
        access.audit_log(limit=-1)
    assert info.value.field == "limit"


def test_allowed_is_a_question_and_is_not_audited() -> None:
    access = make_access()
    access.allowed("b", "a", "storage", "read")
    assert access.audit_log() == []


def test_audit_records_go_to_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    access = make_access(audit_sink=path)
    access.check("a", "a", "storage", "write", target="k")
    with pytest.raises(AccessDeniedError):
        access.check("b", "a", "storage", "write", target="k")
    access.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [
        {"time": 100.0, "actor": "a", "owner": "a", "kind": "storage", "op": "write", "target": "k",
         "decision": "allow", "reason": "owner"},
        {"time": 100.0, "actor": "b", "owner": "a", "kind": "storage", "op": "write", "target": "k",
         "decision": "deny", "reason": "no ownership, group privilege or grant"},
    ]  # fmt: skip


def test_unopenable_audit_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_access(audit_sink=tmp_path / "missing-dir" / "audit.jsonl")
    assert info.value.field == "audit_sink"


def test_audit_records_go_to_a_callable_sink_and_a_failing_sink_does_not_break_checks() -> None:
    seen: list[AuditRecord] = []
    access = make_access(audit_sink=seen.append)
    access.grant("a", "a", "memory", "b", ["read"])
    assert [(r.op, r.decision) for r in seen] == [("share", "allow")]
    assert "grant read to 'b'" in seen[0].reason

    def broken(record: AuditRecord) -> None:
        raise OSError("disk full")

    failing = make_access(audit_sink=broken)
    failing.check("a", "a", "storage", "read")
    assert failing.audit_sink_errors == 1
    assert failing.audit_log()[0].decision == "allow"


# -- the property: an independent model of the rules ------------------------------------------------

AGENTS = ["a", "b", "c", "d"]
GROUPS = ["admin", "auditors", "ops"]
KINDS = ["memory", "storage"]
PRIVILEGES = [(k, o) for k in [*KINDS, "*"] for o in [*sorted(OPS), "*"]]
PREFIXES = ["", "docs/", "docs/x"]
TARGETS = [None, "", "docs/", "docs/x", "docs/x1", "notes"]
DESTRUCTIVE = ["overwrite", "delete", "rollback"]


class Model:
    """The rules written as plainly as possible: a set of (owner, kind, grantee, prefix, op) facts."""

    def __init__(
        self,
        groups: dict[str, set[tuple[str, str]]],
        members: dict[str, set[str]],
        allow_all: bool,
        confirm_own: bool,
        always: set[str],
    ):
        self.groups = {g: set(p) | ({("*", "share")} if g == "admin" else set()) for g, p in groups.items()}
        self.members = {a: set(gs) for a, gs in members.items()}
        self.facts: set[tuple[str, str, str, str, str]] = set()
        self.allow_all, self.confirm_own, self.always = allow_all, confirm_own, always

    def allowed(self, actor: str, owner: str, kind: str, op: str, target: str | None) -> bool:
        if actor == owner:
            return True
        for group in self.members.get(actor, set()):
            for pk, po in self.groups[group]:
                if pk in (kind, "*") and po in (op, "*"):
                    return True
        if op == "share":
            return False
        for o, k, g, prefix, gop in self.facts:
            key_ok = prefix == "" if target is None else target.startswith(prefix)
            if (o, k, g, gop) == (owner, kind, actor, op) and key_ok:
                return True
        return False

    def confirmed(self, actor: str, owner: str, op: str) -> bool:
        asks = actor != owner or self.confirm_own or op in self.always
        return not asks or self.allow_all


def revoked(
    fact: tuple[str, str, str, str, str],
    owner: str,
    kind: str,
    grantee: str,
    ops: set[str] | None,
    prefix: str | None,
) -> bool:
    """Whether a revoke of ``ops`` (None: all) on ``prefix`` (None: all) removes ``fact``."""
    o, k, g, p, op = fact
    return (o, k, g) == (owner, kind, grantee) and prefix in (None, p) and (ops is None or op in ops)


names = st.sampled_from(AGENTS)
kinds = st.sampled_from(KINDS)
grantable = st.sets(st.sampled_from(sorted(GRANTABLE_OPS)), min_size=1)
steps = st.one_of(
    st.tuples(st.just("grant"), names, names, kinds, names, grantable, st.sampled_from(PREFIXES)),
    st.tuples(
        st.just("revoke"),
        names,
        names,
        kinds,
        names,
        st.none() | grantable,
        st.none() | st.sampled_from(PREFIXES),
    ),
    st.tuples(st.just("join"), names, st.sampled_from(GROUPS)),
    st.tuples(st.just("leave"), names, st.sampled_from(GROUPS)),
    st.tuples(st.just("check"), names, names, kinds, st.sampled_from(sorted(OPS)), st.sampled_from(TARGETS)),
    st.tuples(
        st.just("destroy"), names, names, kinds, st.sampled_from(DESTRUCTIVE), st.sampled_from(TARGETS)
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.fixed_dictionaries({g: st.sets(st.sampled_from(PRIVILEGES), max_size=3) for g in GROUPS}),
    members=st.dictionaries(names, st.sets(st.sampled_from(GROUPS), max_size=2), max_size=4),
    allow_all=st.booleans(),
    confirm_own=st.booleans(),
    always=st.sets(st.sampled_from(DESTRUCTIVE)),
    program=st.lists(steps, max_size=40),
)
def test_decisions_match_a_reference_model_of_the_rules(
    groups: dict[str, set[tuple[str, str]]],
    members: dict[str, set[str]],
    allow_all: bool,
    confirm_own: bool,
    always: set[str],
    program: list[tuple[Any, ...]],
) -> None:
    model = Model(groups, members, allow_all, confirm_own, always)
    access = make_access(
        groups={g: [f"{k}:{o}" for k, o in privs] for g, privs in groups.items()},
        members={a: sorted(gs) for a, gs in members.items()},
        confirmer=CallbackConfirmer(lambda r: True) if allow_all else None,
        confirm_own=confirm_own,
        always_confirm=always,
    )

    def expect_decision(expected: bool, call: Any, *args: Any, **kw: Any) -> None:
        if expected:
            call(*args, **kw)
            assert last(access)[0].decision == "allow"
        else:
            with pytest.raises(AccessDeniedError):
                call(*args, **kw)
            assert last(access)[0].decision == "deny"

    async def run() -> None:
        for step in program:
            match step:
                case ("grant", actor, owner, kind, grantee, ops, prefix):
                    ok = model.allowed(actor, owner, kind, "share", None)
                    expect_decision(ok, access.grant, actor, owner, kind, grantee, ops, prefix=prefix)
                    if ok:
                        model.facts |= {(owner, kind, grantee, prefix, op) for op in ops}
                case ("revoke", actor, owner, kind, grantee, ops, prefix):
                    ok = model.allowed(actor, owner, kind, "share", None)
                    expect_decision(ok, access.revoke, actor, owner, kind, grantee, ops, prefix=prefix)
                    if ok:
                        model.facts = {
                            f for f in model.facts if not revoked(f, owner, kind, grantee, ops, prefix)
                        }
                case ("join", agent, group):
                    access.add_member(agent, group)
                    model.members.setdefault(agent, set()).add(group)
                case ("leave", agent, group):
                    access.remove_member(agent, group)
                    model.members.get(agent, set()).discard(group)
                case ("check", actor, owner, kind, op, target):
                    ok = model.allowed(actor, owner, kind, op, target)
                    assert access.allowed(actor, owner, kind, op, target=target) is ok, step
                    expect_decision(ok, access.check, actor, owner, kind, op, target=target)
                    record = last(access)[0]
                    assert (record.actor, record.owner, record.kind, record.op, record.target) == step[1:]
                case ("destroy", actor, owner, kind, op, target):
                    before = len(access.audit_log(limit=None))
                    if model.confirmed(actor, owner, op):
                        await access.confirm_destructive(actor, owner, kind, op, target)
                        assert last(access)[0].decision in {"allow", "confirmed"}
                    else:
                        with pytest.raises(AccessDeniedError):
                            await access.confirm_destructive(actor, owner, kind, op, target)
                        asked, refused = last(access, 2)
                        assert (asked.decision, refused.decision) == ("asked", "refused")
                        assert (refused.actor, refused.owner, refused.kind, refused.op, refused.target) == (
                            actor,
                            owner,
                            kind,
                            op,
                            target,
                        )
                    assert len(access.audit_log(limit=None)) > before
        # Finally, every question over the whole space agrees with the model.
        for actor in AGENTS:
            for owner in AGENTS:
                for kind in KINDS:
                    for op in sorted(OPS):
                        for target in TARGETS:
                            expected = model.allowed(actor, owner, kind, op, target)
                            assert access.allowed(actor, owner, kind, op, target=target) is expected

    asyncio.run(run())
