"""Summaries of one run: throughput, waiting and turnaround per request and per agent.

Definitions (the same in every mode):

- request waiting: submission of the call to its first token (to its end for a tool call);
- request turnaround: submission to completion;
- agent turnaround: the start of the run (every agent is submitted then, also in ``sequential``
  mode, where later agents simply wait for earlier ones) to the agent's last call's completion;
- agent waiting: the start of the run to the agent's first submission, plus the waiting of each of
  its LLM calls (time it was ready to use the model but had no token yet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aios.benchmarks.efficiency.drivers import CallRecord
from aios.metrics import percentile


@dataclass(slots=True)
class AgentRecord:
    """One agent's calls in one run."""

    name: str
    group: str
    first_submit: float = math.inf
    finished: float = 0.0
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def turnaround(self) -> float:
        """Run start to the agent's last completion."""
        return self.finished

    @property
    def waiting(self) -> float:
        """Run start to first submission, plus the LLM calls' waiting."""
        start = 0.0 if math.isinf(self.first_submit) else self.first_submit
        return start + sum(c.waiting for c in self.calls if c.kind == "llm")


@dataclass(slots=True)
class RunRecord:
    """What one mode did: every call, wall and process CPU time."""

    agents: list[AgentRecord]
    wall_s: float
    cpu_s: float

    def calls(self, kind: str | None = None) -> list[CallRecord]:
        """All calls (of ``kind``)."""
        return [c for a in self.agents for c in a.calls if kind is None or c.kind == kind]


def dist(values: list[float]) -> dict[str, float]:
    """avg, p50, p90, p99, max and count of ``values`` (seconds)."""
    return {
        "n": float(len(values)),
        "avg": sum(values) / len(values) if values else 0.0,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else 0.0,
    }


def summarize(run: RunRecord) -> dict[str, Any]:
    """The JSON-able numbers of one run."""
    llm = run.calls("llm")
    tools = run.calls("tool")
    ok = [c for c in llm if c.error is None]
    completion = sum(c.completion_tokens for c in ok)
    prompt = sum(c.prompt_tokens for c in ok)
    n = len(llm) + len(tools)
    wall = run.wall_s or 1e-9
    groups: dict[str, list[AgentRecord]] = {}
    for a in run.agents:
        groups.setdefault(a.group, []).append(a)
    errors = [c.error for c in run.calls() if c.error is not None]
    return {
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "cpu_ms_per_syscall": run.cpu_s / n * 1e3 if n else 0.0,
        "syscalls": n,
        "llm_calls": len(llm),
        "tool_calls": len(tools),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "throughput": {
            "syscalls_per_s": n / wall,
            "llm_calls_per_s": len(llm) / wall,
            "completion_tokens_per_s": completion / wall,
            "total_tokens_per_s": (completion + prompt) / wall,
        },
        "request": {
            "waiting_s": dist([c.waiting for c in ok]),
            "turnaround_s": dist([c.turnaround for c in ok]),
        },
        "agent": {
            "waiting_s": dist([a.waiting for a in run.agents]),
            "turnaround_s": dist([a.turnaround for a in run.agents]),
        },
        "groups": {
            g: {
                "agents": len(rows),
                "agent_turnaround_s": dist([a.turnaround for a in rows]),
                "agent_waiting_s": dist([a.waiting for a in rows]),
            }
            for g, rows in sorted(groups.items())
        },
    }
