"""Seeded fault decisions and the log of faults that really happened.

A ``FaultPlan`` answers one question: for this call (named by a stable key such as the prompt's
label), which fault, if any? The answer is a pure function of ``(seed, key)``: it does not depend
on the order in which concurrent calls arrive, so a run with faults and a run without them can be
compared call by call, and a failure found at seed N is found again at seed N.

A ``FaultLog`` counts the faults that were *realized* (a drop "after 12 tokens" of an answer that
has 8 never happens, and is not counted), keyed the same way, so a run can tell which calls and
which agents were hit.
"""

from __future__ import annotations

import enum
import hashlib
import math
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aios.errors import ConfigError


class Fault(enum.Enum):
    """What can go wrong; each chaos component injects the kinds that make sense for it."""

    #: HTTP 429 / ``RateLimitedError``.
    RATE_LIMIT = "rate_limit"
    #: HTTP 500 / ``BackendError(status_code=500)``.
    SERVER_ERROR = "server_error"
    #: HTTP 503 / ``BackendError(status_code=503)``.
    UNAVAILABLE = "unavailable"
    #: The answer arrives, late (a latency spike); the result itself is unchanged.
    LATENCY = "latency"
    #: The connection drops before any output.
    DROP_BEFORE = "drop_before"
    #: The connection drops after some output was streamed.
    DROP_DURING = "drop_during"
    #: The response is not what the protocol promises (bad JSON, wrong shape, not an outcome).
    MALFORMED = "malformed"
    #: Nothing ever comes back; only a timeout or the caller's deadline ends the call.
    HANG = "hang"
    #: A foreign exception (a bug): a backend, tool or kernel component raises ``RuntimeError``.
    CRASH = "crash"
    #: A tool returns something that is not JSON.
    GARBAGE = "garbage"


#: What can go wrong with an LLM call, in process (the chaos backend) or over HTTP (the stub).
LLM_CALL_FAULTS = frozenset(
    {
        Fault.RATE_LIMIT,
        Fault.SERVER_ERROR,
        Fault.UNAVAILABLE,
        Fault.LATENCY,
        Fault.DROP_BEFORE,
        Fault.DROP_DURING,
        Fault.MALFORMED,
        Fault.HANG,
        Fault.CRASH,
    }
)


class ChaosFault(RuntimeError):
    """The foreign exception chaos components raise for ``Fault.CRASH`` (a stand-in for a bug)."""


def _unit(seed: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) from ``(seed, key, salt)``, the same in every process."""
    digest = hashlib.blake2b(f"{seed}\x1f{salt}\x1f{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Per-call fault probabilities, drawn deterministically from ``seed`` and the call's key."""

    seed: int = 0
    rates: Mapping[Fault, float] = field(default_factory=dict)
    #: Only keys that start with this prefix can get a fault (e.g. the names of "exposed" agents).
    scope: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}", field="seed")
        total = 0.0
        for kind, p in self.rates.items():
            if not isinstance(kind, Fault):
                raise ConfigError(f"unknown fault {kind!r}; known: {[f.value for f in Fault]}", field="rates")
            if isinstance(p, bool) or not isinstance(p, int | float) or not math.isfinite(p) or p < 0:
                raise ConfigError(f"rate of {kind.value} must be a number >= 0, got {p!r}", field="rates")
            total += p
        if total > 1.0 + 1e-9:
            raise ConfigError(f"fault rates add up to {total:g}, more than 1", field="rates")
        if not isinstance(self.scope, str):
            raise ConfigError("scope must be a string (a key prefix)", field="scope")

    @classmethod
    def from_options(cls, seed: object = 0, rates: object = None, scope: object = "") -> FaultPlan:
        """A plan from config values: ``rates`` maps fault names (``"rate_limit"``...) to probabilities."""
        if rates is None:
            rates = {}
        if not isinstance(rates, Mapping):
            raise ConfigError("rates must be a table of fault name -> probability", field="rates")
        parsed: dict[Fault, float] = {}
        for name, p in rates.items():
            try:
                kind = Fault(name)
            except ValueError:
                raise ConfigError(
                    f"unknown fault {name!r}; known: {[f.value for f in Fault]}", field=f"rates.{name}"
                ) from None
            parsed[kind] = p
        return cls(seed=seed, rates=parsed, scope=scope)  # type: ignore[arg-type]  # checked in __post_init__

    def only(self, kinds: Iterable[Fault]) -> FaultPlan:
        """The same plan restricted to ``kinds`` (other faults become "no fault", not other faults)."""
        keep = set(kinds)
        return FaultPlan(self.seed, {k: p for k, p in self.rates.items() if k in keep}, self.scope)

    @property
    def active(self) -> bool:
        """Whether any fault has a non-zero rate."""
        return any(p > 0 for p in self.rates.values())

    def decide(self, key: str, *, salt: str = "") -> Fault | None:
        """The fault for the call named ``key`` (None: no fault); ``salt`` separates components."""
        if not self.rates or not key.startswith(self.scope):
            return None
        u = _unit(self.seed, key, salt)
        edge = 0.0
        # A fixed order, so adding a kind with rate 0 changes nothing.
        for kind in Fault:
            edge += self.rates.get(kind, 0.0)
            if u < edge:
                return kind
        return None

    def uniform(self, key: str, *, salt: str) -> float:
        """Another deterministic number in [0, 1) for ``key`` (e.g. where in a stream to drop)."""
        return _unit(self.seed, key, "u:" + salt)


class FaultLog:
    """The faults that happened, by kind and by key; safe to update from worker threads."""

    def __init__(self, *, keep_keys: bool = True):
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        #: key -> the faults realized on it, in order (empty unless ``keep_keys``).
        self.by_key: dict[str, list[str]] = {}
        self._keep = keep_keys

    def record(self, component: str, fault: Fault, key: str) -> None:
        """Count one realized fault of ``component`` (``"backend"``, ``"tool"``, ``"policy"``...)."""
        name = f"{component}.{fault.value}"
        with self._lock:
            self.counts[name] += 1
            if self._keep:
                self.by_key.setdefault(key, []).append(name)

    def hit(self, key: str) -> bool:
        """Whether any fault was realized on ``key``."""
        with self._lock:
            return bool(self.by_key.get(key))

    def total(self) -> int:
        """How many faults were realized."""
        with self._lock:
            return sum(self.counts.values())

    def summary(self) -> dict[str, int]:
        """Realized faults per ``component.kind``, sorted by name."""
        with self._lock:
            return dict(sorted(self.counts.items()))
