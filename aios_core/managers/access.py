"""The access manager: who may read, change or share which agent's memory and storage.

Resources are ``(owner agent, kind)`` with kind ``"memory"`` or ``"storage"``; operations are
``read``, ``write``, ``delete``, ``rollback`` and ``share``. A storage operation may name a
``target`` (a key); per-agent grants can be scoped to a key prefix.

The rules, in full (an operation is allowed iff one of 1-3 holds):

1. **Ownership.** An agent may do every operation on its own resources.
2. **Groups.** A group carries privileges ``"<kind>:<op>"`` (either part may be ``*``) that apply
   to *every* agent's resources, e.g. ``auditors = {"storage:read"}``. An agent has the union of
   its groups' privileges. The group named ``admin_group`` (default ``"admin"``) always carries
   ``"*:share"``: its members may grant and revoke on anyone's resources.
3. **Grants.** ``grant`` gives one agent some of ``read``, ``write``, ``delete``, ``rollback`` on
   one owner's resource, optionally only for keys starting with ``prefix`` (``""``: every key).
   A grant covers a target key that starts with its prefix; an operation with no target (the
   whole resource, e.g. listing every key) is covered only by a grant with prefix ``""``.
   ``share`` itself is never grantable, so rights cannot be passed on by those who received them.
   Granting and revoking is the ``share`` operation: the owner, or anyone holding ``share`` on
   that kind through a group (rule 2), may do it.

Groups and memberships are kernel configuration (no actor): agents cannot change them.

**Confirmation.** Destructive operations (``overwrite`` of a live value, ``delete``, ``rollback``)
pass a second gate after ``check``: ``confirm_destructive`` asks the ``Confirmer`` when

- the actor does not own the data (always), or
- the actor owns the data and ``confirm_own`` is True, or the operation is in ``always_confirm``.

Otherwise it is allowed without asking. With no configuration the confirmer is
``DenyConfirmer``, so an agent freely changes its own data while destructive operations on other
agents' data (even with a write grant) are refused until someone configures a confirmer. A
confirmer that raises, or does not answer within ``confirm_timeout`` seconds, counts as a refusal.

**Audit.** Every decision is appended to a bounded in-memory ring and, if configured, to a sink
(a callable, or a JSONL file path, one line-buffered append per record: no fsync). Decisions are
``allow``/``deny`` (from ``check``, ``grant``, ``revoke`` and confirmation-free destructive ops),
``asked``, ``confirmed``, ``refused``. ``allowed()`` is a question, not a decision, and is not
audited. The manager is meant for one event loop (it is not thread-safe).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO

from aios.errors import AccessDeniedError, ConfigError, InvalidRequestError
from aios.managers.confirm import DESTRUCTIVE_OPS, ConfirmationRequest, Confirmer, DenyConfirmer

__all__ = [
    "DESTRUCTIVE_OPS",
    "GRANTABLE_OPS",
    "KINDS",
    "OPS",
    "AccessManager",
    "AuditRecord",
    "Grant",
]

_log = logging.getLogger(__name__)

KINDS: frozenset[str] = frozenset({"memory", "storage"})
OPS: frozenset[str] = frozenset({"read", "write", "delete", "rollback", "share"})
GRANTABLE_OPS: frozenset[str] = frozenset({"read", "write", "delete", "rollback"})

#: The permission ``check`` governs for each destructive operation (read-only: no module state).
_PERMISSION_OF: Mapping[str, str] = MappingProxyType(
    {"overwrite": "write", "delete": "delete", "rollback": "rollback"}
)


@dataclass(slots=True, frozen=True)
class Grant:
    """Operations ``grantee`` may do on ``owner``'s ``kind``, for keys starting with ``prefix``."""

    owner: str
    kind: str
    grantee: str
    prefix: str
    ops: frozenset[str]

    def covers(self, op: str, target: str | None) -> bool:
        """Whether this grant allows ``op`` on ``target`` (None: the whole resource)."""
        if op not in self.ops:
            return False
        if target is None:
            return self.prefix == ""
        return target.startswith(self.prefix)


@dataclass(slots=True, frozen=True)
class AuditRecord:
    """One decision of the access manager."""

    time: float
    actor: str
    owner: str
    kind: str
    op: str
    target: str | None
    #: "allow", "deny", "asked", "confirmed" or "refused".
    decision: str
    reason: str


AuditSink = Callable[[AuditRecord], None]


class AccessManager:
    """Privilege groups, per-agent grants, confirmation of destructive operations, and an audit log."""

    def __init__(
        self,
        *,
        groups: Mapping[str, Iterable[str]] | None = None,
        members: Mapping[str, Iterable[str]] | None = None,
        admin_group: str = "admin",
        confirmer: Confirmer | None = None,
        confirm_own: bool = False,
        always_confirm: Iterable[str] = (),
        confirm_timeout: float = 60.0,
        audit_size: int = 10_000,
        audit_sink: AuditSink | str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not isinstance(admin_group, str) or not admin_group:
            raise ConfigError("admin_group must be a non-empty string", field="admin_group")
        always = frozenset(always_confirm)
        if not always <= DESTRUCTIVE_OPS:
            bad = sorted(always - DESTRUCTIVE_OPS)
            raise ConfigError(
                f"always_confirm may only list {sorted(DESTRUCTIVE_OPS)}, not {bad}", field="always_confirm"
            )
        if not confirm_timeout > 0:
            raise ConfigError("confirm_timeout must be positive", field="confirm_timeout")
        if not isinstance(audit_size, int) or audit_size < 1:
            raise ConfigError("audit_size must be a positive integer", field="audit_size")
        if confirmer is not None and not isinstance(confirmer, Confirmer):
            raise ConfigError("confirmer must have an async confirm(request) method", field="confirmer")
        self.admin_group = admin_group
        self.confirmer: Confirmer = confirmer if confirmer is not None else DenyConfirmer()
        self.confirm_own = confirm_own
        self.always_confirm = always
        self.confirm_timeout = confirm_timeout
        self._clock = clock
        self._groups: dict[str, frozenset[tuple[str, str]]] = {}
        self._members: dict[str, set[str]] = {}
        # (owner, kind, grantee) -> {prefix: ops}: a check looks at one small dict.
        self._grants: dict[tuple[str, str, str], dict[str, frozenset[str]]] = {}
        self._audit: collections.deque[AuditRecord] = collections.deque(maxlen=audit_size)
        self._sink: AuditSink | None = None
        self._sink_file: IO[str] | None = None
        self.audit_sink_errors = 0
        self.define_group(admin_group, ())
        for name, privileges in (groups or {}).items():
            self.define_group(name, privileges)
        for agent, agent_groups in (members or {}).items():
            for group in agent_groups:
                self.add_member(agent, group)
        if isinstance(audit_sink, str | Path):
            # Line-buffered so each record reaches the OS as soon as it is written.
            try:
                self._sink_file = open(audit_sink, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
            except OSError as exc:
                raise ConfigError(
                    f"cannot open audit log {str(audit_sink)!r}: {exc}", field="audit_sink"
                ) from exc
        elif audit_sink is not None:
            if not callable(audit_sink):
                raise ConfigError("audit_sink must be a callable or a file path", field="audit_sink")
            self._sink = audit_sink

    # -- groups ---------------------------------------------------------------------------------

    def define_group(self, name: str, privileges: Iterable[str]) -> None:
        """Create or replace group ``name`` with privileges like ``"storage:read"`` or ``"*:*"``."""
        if not isinstance(name, str) or not name:
            raise ConfigError("group name must be a non-empty string", field="groups")
        parsed = {_parse_privilege(p) for p in privileges}
        if name == self.admin_group:
            parsed.add(("*", "share"))
        self._groups[name] = frozenset(parsed)

    def add_member(self, agent: str, group: str) -> None:
        """Put ``agent`` in ``group`` (which must be defined)."""
        _require_name(agent, "agent")
        if group not in self._groups:
            raise ConfigError(f"unknown group {group!r}", field="members")
        self._members.setdefault(agent, set()).add(group)

    def remove_member(self, agent: str, group: str) -> None:
        """Take ``agent`` out of ``group`` (no error if it was not in it)."""
        self._members.get(agent, set()).discard(group)

    def groups_of(self, agent: str) -> frozenset[str]:
        """The groups ``agent`` belongs to."""
        return frozenset(self._members.get(agent, ()))

    def group_privileges(self, group: str) -> frozenset[str]:
        """The privileges of ``group`` as ``"<kind>:<op>"`` strings."""
        if group not in self._groups:
            raise ConfigError(f"unknown group {group!r}", field="groups")
        return frozenset(f"{k}:{o}" for k, o in self._groups[group])

    # -- grants ---------------------------------------------------------------------------------

    def grant(
        self, actor: str, owner: str, kind: str, grantee: str, ops: Iterable[str], *, prefix: str = ""
    ) -> Grant:
        """Let ``grantee`` do ``ops`` on ``owner``'s ``kind`` (keys under ``prefix``); returns the grant."""
        _validate(actor, owner, kind, "share", None)
        _require_name(grantee, "grantee")
        if not isinstance(prefix, str):
            raise InvalidRequestError("prefix must be a string", field="prefix")
        op_set = _grantable(ops)
        what = f"grant {','.join(sorted(op_set))} to {grantee!r} on prefix {prefix!r}"
        self._decide_share(actor, owner, kind, prefix, what)
        by_prefix = self._grants.setdefault((owner, kind, grantee), {})
        merged = by_prefix.get(prefix, frozenset()) | op_set
        by_prefix[prefix] = merged
        return Grant(owner, kind, grantee, prefix, merged)

    def revoke(
        self,
        actor: str,
        owner: str,
        kind: str,
        grantee: str,
        ops: Iterable[str] | None = None,
        *,
        prefix: str | None = "",
    ) -> None:
        """Take ``ops`` (None: all) back from ``grantee``, for ``prefix`` (None: every prefix)."""
        _validate(actor, owner, kind, "share", None)
        _require_name(grantee, "grantee")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequestError("prefix must be a string or None", field="prefix")
        op_set = GRANTABLE_OPS if ops is None else _grantable(ops)
        what = f"revoke {','.join(sorted(op_set))} from {grantee!r} on prefix {prefix!r}"
        self._decide_share(actor, owner, kind, prefix, what)
        by_prefix = self._grants.get((owner, kind, grantee), {})
        for p in [p for p in by_prefix if prefix is None or p == prefix]:
            left = by_prefix[p] - op_set
            if left:
                by_prefix[p] = left
            else:
                del by_prefix[p]
        if not by_prefix:
            self._grants.pop((owner, kind, grantee), None)

    def grants(self, *, owner: str | None = None, grantee: str | None = None) -> list[Grant]:
        """The current grants, optionally only those of one owner and/or one grantee."""
        return [
            Grant(o, k, g, p, ops)
            for (o, k, g), by_prefix in sorted(self._grants.items())
            if (owner is None or o == owner) and (grantee is None or g == grantee)
            for p, ops in sorted(by_prefix.items())
        ]

    def _decide_share(self, actor: str, owner: str, kind: str, prefix: str | None, what: str) -> None:
        reason = self._reason(actor, owner, kind, "share", None)
        if reason is None:
            denial = f"{what}: not owner, no share privilege"
            self._record(actor, owner, kind, "share", prefix, "deny", denial)
            raise AccessDeniedError(f"agent {actor!r} may not share {owner!r}'s {kind} ({what})", agent=actor)
        self._record(actor, owner, kind, "share", prefix, "allow", f"{what} ({reason})")

    # -- decisions ------------------------------------------------------------------------------

    def allowed(self, actor: str, owner: str, kind: str, op: str, *, target: str | None = None) -> bool:
        """Whether ``actor`` may do ``op`` on ``owner``'s ``kind`` (not audited: a question)."""
        _validate(actor, owner, kind, op, target)
        return self._reason(actor, owner, kind, op, target) is not None

    def check(self, actor: str, owner: str, kind: str, op: str, *, target: str | None = None) -> None:
        """Raise ``AccessDeniedError`` unless ``actor`` may do ``op``; the decision is audited."""
        _validate(actor, owner, kind, op, target)
        reason = self._reason(actor, owner, kind, op, target)
        if reason is None:
            self._record(actor, owner, kind, op, target, "deny", "no ownership, group privilege or grant")
            what = f" key {target!r} of" if target is not None else ""
            raise AccessDeniedError(f"agent {actor!r} may not {op}{what} {owner!r}'s {kind}", agent=actor)
        self._record(actor, owner, kind, op, target, "allow", reason)

    def _reason(self, actor: str, owner: str, kind: str, op: str, target: str | None) -> str | None:
        """Why the operation is allowed, or None when it is not."""
        if actor == owner:
            return "owner"
        for group in sorted(self._members.get(actor, ())):
            for gk, go in self._groups.get(group, ()):
                if gk in (kind, "*") and go in (op, "*"):
                    return f"group {group!r}"
        if op == "share":
            return None
        for p, ops in self._grants.get((owner, kind, actor), {}).items():
            if Grant(owner, kind, actor, p, ops).covers(op, target):
                return f"grant on prefix {p!r}"
        return None

    # -- confirmation ---------------------------------------------------------------------------

    def needs_confirmation(self, actor: str, owner: str, kind: str, op: str) -> bool:
        """Whether the destructive ``op`` ("overwrite", "delete", "rollback") must be confirmed."""
        _validate(actor, owner, kind, _destructive(op), None)
        return actor != owner or self.confirm_own or op in self.always_confirm

    async def confirm_destructive(
        self, actor: str, owner: str, kind: str, op: str, target: str | None
    ) -> None:
        """Raise ``AccessDeniedError`` unless the destructive ``op`` may go ahead (see module doc).

        This is the second gate; call ``check`` for the matching permission first.
        """
        if not self.needs_confirmation(actor, owner, kind, op):
            self._record(actor, owner, kind, op, target, "allow", "own data; no confirmation required")
            return
        request = ConfirmationRequest(actor=actor, owner=owner, kind=kind, op=op, target=target)
        confirmer_name = type(self.confirmer).__name__
        self._record(actor, owner, kind, op, target, "asked", f"asked {confirmer_name}")
        try:
            async with asyncio.timeout(self.confirm_timeout):
                answer = await self.confirmer.confirm(request)
        except TimeoutError:
            answer, reason = False, f"{confirmer_name} did not answer within {self.confirm_timeout}s"
        except asyncio.CancelledError:
            self._record(actor, owner, kind, op, target, "refused", "cancelled while awaiting confirmation")
            raise
        except Exception as exc:
            # A broken confirmer must fail closed.
            answer, reason = False, f"{confirmer_name} failed: {type(exc).__name__}: {exc}"
        else:
            reason = f"{confirmer_name} answered {'yes' if answer is True else 'no'}"
        if answer is not True:
            self._record(actor, owner, kind, op, target, "refused", reason)
            what = f" key {target!r} of" if target is not None else ""
            raise AccessDeniedError(
                f"agent {actor!r} may not {op}{what} {owner!r}'s {kind}: confirmation refused ({reason})",
                agent=actor,
            )
        self._record(actor, owner, kind, op, target, "confirmed", reason)

    # -- audit ----------------------------------------------------------------------------------

    def audit_log(self, limit: int | None = 100) -> list[AuditRecord]:
        """The most recent audit records, oldest first (``limit=None``: all that are kept)."""
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidRequestError("limit must be a non-negative integer or None", field="limit")
        records = list(self._audit)
        if limit is None:
            return records
        return records[len(records) - limit :] if limit else []

    def close(self) -> None:
        """Close the audit file, if one was opened."""
        if self._sink_file is not None:
            self._sink_file.close()
            self._sink_file = None

    def _record(
        self, actor: str, owner: str, kind: str, op: str, target: str | None, decision: str, reason: str
    ) -> None:
        record = AuditRecord(self._clock(), actor, owner, kind, op, target, decision, reason)
        self._audit.append(record)
        try:
            if self._sink_file is not None:
                self._sink_file.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            elif self._sink is not None:
                self._sink(record)
        except Exception:
            # The decision stands and the ring keeps it; a failing sink must not break access checks.
            self.audit_sink_errors += 1
            _log.exception("audit sink failed")


def _require_name(value: object, field: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{field} must be a non-empty string", field=field)


def _validate(actor: str, owner: str, kind: str, op: str, target: str | None) -> None:
    _require_name(actor, "actor")
    _require_name(owner, "owner")
    if kind not in KINDS:
        raise InvalidRequestError(f"kind must be one of {sorted(KINDS)}, not {kind!r}", field="kind")
    if op not in OPS:
        raise InvalidRequestError(f"op must be one of {sorted(OPS)}, not {op!r}", field="op")
    if target is not None and not isinstance(target, str):
        raise InvalidRequestError("target must be a string or None", field="target")


def _destructive(op: str) -> str:
    """The permission that governs destructive ``op``; raises for anything else."""
    if op not in _PERMISSION_OF:
        raise InvalidRequestError(f"op must be one of {sorted(DESTRUCTIVE_OPS)}, not {op!r}", field="op")
    return _PERMISSION_OF[op]


def _grantable(ops: Iterable[str]) -> frozenset[str]:
    if isinstance(ops, str):
        ops = (ops,)
    # ops comes from callers (syscall arguments): anything but an iterable of strings is refused.
    items = list(ops) if isinstance(ops, Iterable) and not isinstance(ops, bytes | Mapping) else None
    if items is None or not all(isinstance(op, str) for op in items):
        raise InvalidRequestError(
            f"ops must be a non-empty list of {sorted(GRANTABLE_OPS)}, not {ops!r}", field="ops"
        )
    op_set = frozenset(items)
    if not op_set or not op_set <= GRANTABLE_OPS:
        raise InvalidRequestError(
            f"ops must be a non-empty subset of {sorted(GRANTABLE_OPS)}, not {sorted(op_set)}", field="ops"
        )
    return op_set


def _parse_privilege(privilege: str) -> tuple[str, str]:
    kind, sep, op = privilege.partition(":") if isinstance(privilege, str) else ("", "", "")
    if not sep or kind not in KINDS | {"*"} or op not in OPS | {"*"}:
        raise ConfigError(
            f"privilege must look like '<kind>:<op>' ('*' allowed), not {privilege!r}", field="groups"
        )
    return kind, op
