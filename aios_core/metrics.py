"""Per-syscall and per-agent metrics, kept by the kernel as syscalls finish.

Per-agent aggregates are exact for the kernel's whole life; per-syscall records are kept in a
bounded ring (``keep`` most recent) so a long-running kernel does not grow without limit.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aios.syscalls import Syscall, SyscallStats


@dataclass(slots=True)
class AgentMetrics:
    """What one agent got from the kernel."""

    agent: str
    syscalls: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    preemptions: int = 0
    waiting_total: float = 0.0
    turnaround_total: float = 0.0
    turnaround_max: float = 0.0
    #: Seconds from submission to completion, summed per syscall kind (LLM time vs tool time).
    seconds_by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def waiting_avg(self) -> float:
        """Mean waiting time per syscall."""
        return self.waiting_total / self.syscalls if self.syscalls else 0.0

    @property
    def turnaround_avg(self) -> float:
        """Mean turnaround per syscall."""
        return self.turnaround_total / self.syscalls if self.syscalls else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        d = asdict(self)
        d["by_kind"] = dict(self.by_kind)
        d["waiting_avg"] = self.waiting_avg
        d["turnaround_avg"] = self.turnaround_avg
        return d


#: Upper bounds (seconds) of the latency histograms: 5 ms to 10 min, roughly x2.5 apart.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip


@dataclass(slots=True)
class Histogram:
    """Counts of observations per bucket (non-cumulative; ``counts[-1]`` is above the last bound)."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Add one observation (a bound is inclusive, as in Prometheus' ``le``)."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs, ending with ``(inf, count)``."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


class MetricsCollector:
    """Aggregates finished syscalls; the dispatcher calls ``record`` once per syscall."""

    def __init__(self, *, keep: int = 100_000):
        self.recent: deque[SyscallStats] = deque(maxlen=keep)
        self.agents: dict[str, AgentMetrics] = {}
        self.errors: Counter[str] = Counter()
        self.routes: Counter[tuple[str, str]] = Counter()
        self.preemptions = 0
        self.finished = 0
        #: Per syscall kind: waiting and turnaround histograms over the kernel's whole life.
        self.waiting: dict[str, Histogram] = {}
        self.turnaround: dict[str, Histogram] = {}

    def record(self, sc: Syscall) -> SyscallStats:
        """Fold a finished syscall into the aggregates."""
        st = SyscallStats.of(sc)
        self.recent.append(st)
        self.finished += 1
        if sc.kind == "llm" and sc.core is not None:
            self.route(getattr(sc.payload, "model", None), sc.core)
        m = self.agents.get(st.agent)
        if m is None:
            m = self.agents[st.agent] = AgentMetrics(agent=st.agent)
        m.syscalls += 1
        m.by_kind[st.kind] += 1
        if st.status == "done":
            m.done += 1
        elif st.status == "cancelled":
            m.cancelled += 1
        else:
            m.failed += 1
        if st.error:
            self.errors[st.error] += 1
        m.prompt_tokens += st.prompt_tokens
        m.completion_tokens += st.completion_tokens
        m.preemptions += st.preemptions
        self.preemptions += st.preemptions
        m.waiting_total += st.waiting
        m.turnaround_total += st.turnaround
        m.turnaround_max = max(m.turnaround_max, st.turnaround)
        m.seconds_by_kind[st.kind] = m.seconds_by_kind.get(st.kind, 0.0) + st.turnaround
        self.waiting.setdefault(st.kind, Histogram()).observe(st.waiting)
        self.turnaround.setdefault(st.kind, Histogram()).observe(st.turnaround)
        return st

    def route(self, model: str | None, core: str) -> None:
        """Count which core served a model name (the routing table, as used)."""
        self.routes[(model or "", core)] += 1

    def latency_summary(self, kind: str | None = None) -> dict[str, float]:
        """avg/p50/p90/p99 of waiting and turnaround over the recent ring."""
        rows = [s for s in self.recent if kind is None or s.kind == kind]
        out: dict[str, float] = {"count": float(len(rows))}
        for name in ("waiting", "turnaround"):
            vals = [getattr(s, name) for s in rows]
            out[f"{name}_avg"] = sum(vals) / len(vals) if vals else 0.0
            for q in (50, 90, 99):
                out[f"{name}_p{q}"] = percentile(vals, q)
        return out

    def snapshot(self) -> dict[str, Any]:
        """Everything as a JSON-able dict."""
        return {
            "finished": self.finished,
            "preemptions": self.preemptions,
            "errors": dict(self.errors),
            "routes": [{"model": m, "core": c, "calls": n} for (m, c), n in self.routes.items()],
            "agents": {a: m.as_dict() for a, m in self.agents.items()},
            "latency": self.latency_summary(),
        }
