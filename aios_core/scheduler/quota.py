"""Per-agent token quotas (tokens per minute) that delay work, never drop it.

A token bucket per agent: it holds at most one minute's quota, refills continuously, and is
charged with every token processed for the agent (prompt and output). While an agent's bucket is
below zero its waiting syscalls are not eligible; the dispatcher wakes when the earliest one
refills. A call is never refused for quota reasons, only delayed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aios.errors import ConfigError


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class QuotaBook:
    """Token buckets for the agents that have a quota; agents without one are never delayed."""

    def __init__(self, per_minute: Mapping[str, int], default: int | None = None):
        for agent, q in per_minute.items():
            if not isinstance(q, int) or q <= 0:
                raise ConfigError(f"quota for agent {agent!r} must be a positive integer", field="quotas")
        if default is not None and default <= 0:
            raise ConfigError("default quota must be positive", field="default_quota")
        self.per_minute = dict(per_minute)
        self.default = default
        self._buckets: dict[str, _Bucket] = {}

    def limit(self, agent: str) -> int | None:
        """The agent's tokens per minute, or None when unlimited."""
        return self.per_minute.get(agent, self.default)

    def _bucket(self, agent: str, now: float) -> _Bucket | None:
        limit = self.limit(agent)
        if limit is None:
            return None
        b = self._buckets.get(agent)
        if b is None:
            b = self._buckets[agent] = _Bucket(level=float(limit), updated=now)
        else:
            b.level = min(float(limit), b.level + (now - b.updated) * limit / 60.0)
            b.updated = now
        return b

    def eligible_at(self, agent: str, now: float) -> float:
        """The earliest time the agent may run again (``now`` if it may run now)."""
        b = self._bucket(agent, now)
        if b is None or b.level >= 0:
            return now
        limit = self.limit(agent)
        assert limit is not None
        return now + (-b.level) * 60.0 / limit

    def charge(self, agent: str, tokens: int, now: float) -> None:
        """Take ``tokens`` from the agent's bucket (it may go negative: the work already ran)."""
        b = self._bucket(agent, now)
        if b is not None:
            b.level -= tokens

    @property
    def active(self) -> bool:
        """Whether any agent can be limited."""
        return bool(self.per_minute) or self.default is not None
