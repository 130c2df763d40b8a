"""Bearer tokens → principals: which agent a request acts as, and what it may ask for.

Rules:
- Every route except ``/healthz`` and ``/openapi.json`` needs ``Authorization: Bearer <token>``
  with a configured token; otherwise 401 (``/metrics`` may be opened by configuration).
- A request acts as the token's agent. ``X-AIOS-Agent`` may name another agent only if the token
  may act as it: a member of the access manager's admin group may act as anyone; any other token
  as its own agent and the names matching its ``act_as`` patterns. Otherwise 403.
- A token's groups are the access manager's groups for its agent: the access manager, not the
  server, decides what that agent may read, change or share.
- Priorities are bounded to ``[-PRIORITY_BOUND, PRIORITY_BOUND]``, and a token may not ask for a
  more urgent (lower) priority than its ``min_priority``.

Tokens are compared by their SHA-256 digests, so the book never holds a presented secret and a
file may list digests instead of tokens.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from aios.errors import AccessDeniedError, ConfigError, InvalidRequestError
from aios.managers.access import AccessManager
from aios.server.settings import TokenConfig
from aios.wire import AuthenticationError

PRIORITY_BOUND = 1000
MAX_AGENT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: the token's agent, its groups, and whom it may act as."""

    agent: str
    groups: frozenset[str]
    act_as: tuple[str, ...]
    admin: bool
    min_priority: int | None

    def may_act_as(self, agent: str) -> bool:
        """Whether requests of this token may run as ``agent``."""
        if self.admin or agent == self.agent:
            return True
        return any(fnmatch.fnmatchcase(agent, pattern) for pattern in self.act_as)

    def agent_for(self, header: str | None) -> str:
        """The acting agent: ``header`` (``X-AIOS-Agent``) if given and allowed, else the token's."""
        if header is None:
            return self.agent
        if not header or len(header) > MAX_AGENT_CHARS or not header.isprintable():
            raise InvalidRequestError(
                f"X-AIOS-Agent must be a printable agent name of 1..{MAX_AGENT_CHARS} chars",
                field="X-AIOS-Agent",
            )
        if not self.may_act_as(header):
            raise AccessDeniedError(
                f"the token of agent {self.agent!r} may not act as agent {header!r}", agent=self.agent
            )
        return header

    def priority(self, value: int) -> int:
        """``value`` if this token may ask for it; raises otherwise."""
        if not -PRIORITY_BOUND <= value <= PRIORITY_BOUND:
            raise InvalidRequestError(
                f"priority must be in [{-PRIORITY_BOUND}, {PRIORITY_BOUND}], got {value}", field="priority"
            )
        if self.min_priority is not None and value < self.min_priority and not self.admin:
            raise AccessDeniedError(
                f"the token of agent {self.agent!r} may not ask for a priority below {self.min_priority}",
                agent=self.agent,
            )
        return value


def digest(token: str) -> str:
    """The hex SHA-256 of a token, the form the book keeps."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenBook:
    """The configured tokens, joined with the access manager's groups."""

    def __init__(self, tokens: Mapping[str, TokenConfig], access: AccessManager):
        self._by_digest: dict[str, TokenConfig] = {}
        for key, cfg in tokens.items():
            self._by_digest[key[len("sha256:") :] if key.startswith("sha256:") else digest(key)] = cfg
        self._access = access
        for i, cfg in enumerate(tokens.values()):
            for group in cfg.groups:
                try:
                    access.add_member(cfg.agent, group)
                except ConfigError:
                    raise ConfigError(
                        f"server.tokens[{i}] (agent {cfg.agent!r}) names group {group!r}, which the "
                        "kernel's access configuration does not define",
                        field=f"server.tokens[{i}].groups",
                    ) from None

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization`` header; ``AuthenticationError`` if there is none."""
        if not authorization:
            raise AuthenticationError("this server needs 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        cfg = self._by_digest.get(digest(token))
        if cfg is None:
            raise AuthenticationError("the bearer token is not valid")
        groups = self._access.groups_of(cfg.agent)
        return Principal(
            agent=cfg.agent,
            groups=groups,
            act_as=cfg.act_as,
            admin=self._access.admin_group in groups,
            min_priority=cfg.min_priority,
        )
