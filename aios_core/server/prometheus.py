"""``GET /metrics``: the kernel's metrics in the Prometheus text exposition format (version 0.0.4).

Written by hand (a dozen families do not need a client library). Families: queue length, per-core
waiting/in-flight/capacity, per-agent syscalls, outcomes, tokens, preemptions, waiting and
turnaround totals; errors by type; routes; waiting and turnaround histograms per syscall kind;
and the server's own counters (requests in flight, responses by status, open tool runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from aios.kernel import Kernel
from aios.metrics import Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[Mapping[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histograms(self, name: str, help_text: str, by_kind: Mapping[str, Histogram]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        for kind, h in sorted(by_kind.items()):
            for bound, count in h.cumulative():
                le = "+Inf" if math.isinf(bound) else repr(bound)
                self.lines.append(f"{name}_bucket{_labels({'kind': kind, 'le': le})} {count}")
            self.lines.append(f"{name}_sum{_labels({'kind': kind})} {_number(h.sum)}")
            self.lines.append(f"{name}_count{_labels({'kind': kind})} {h.count}")


def render(
    kernel: Kernel, server: Mapping[str, float] | None = None, responses: Mapping[int, int] | None = None
) -> str:
    """The exposition text of ``kernel``'s metrics plus the server's gauges and response counts."""
    m = kernel.metrics
    d = kernel.dispatcher
    agents = sorted(m.agents.items())
    w = _Writer()
    w.family("aios_queue_length", "gauge", "LLM syscalls waiting in the kernel's queue.", [({}, d.queued)])
    w.family(
        "aios_core_waiting", "gauge", "Queued LLM syscalls that may run on the core.",
        [({"core": n}, c.waiting) for n, c in sorted(d.cores.items())],
    )  # fmt: skip
    w.family(
        "aios_core_in_flight", "gauge", "Generations running on the core.",
        [({"core": n}, len(c.running)) for n, c in sorted(d.cores.items())],
    )  # fmt: skip
    w.family(
        "aios_core_capacity", "gauge", "Generations the core runs at once.",
        [({"core": n}, c.capacity) for n, c in sorted(d.cores.items())],
    )  # fmt: skip
    w.family(
        "aios_syscalls_finished_total", "counter", "Syscalls that reached a final state.", [({}, m.finished)]
    )
    w.family(
        "aios_preemptions_total",
        "counter",
        "Generations cut at the end of a time slice.",
        [({}, m.preemptions)],
    )
    w.family(
        "aios_errors_total", "counter", "Failed or cancelled syscalls by error type.",
        [({"type": t}, n) for t, n in sorted(m.errors.items())],
    )  # fmt: skip
    w.family(
        "aios_route_calls_total", "counter", "LLM syscalls by requested model name and serving core.",
        [({"model": mdl, "core": core}, n) for (mdl, core), n in sorted(m.routes.items())],
    )  # fmt: skip
    w.family(
        "aios_agent_syscalls_total", "counter", "Finished syscalls per agent and kind.",
        [({"agent": a, "kind": k}, n) for a, am in agents for k, n in sorted(am.by_kind.items())],
    )  # fmt: skip
    w.family(
        "aios_agent_outcomes_total", "counter", "Finished syscalls per agent and final state.",
        [
            ({"agent": a, "status": s}, getattr(am, s))
            for a, am in agents
            for s in ("done", "failed", "cancelled")
        ],
    )  # fmt: skip
    w.family(
        "aios_agent_tokens_total", "counter", "Tokens per agent (prompt or completion).",
        [
            ({"agent": a, "type": t}, getattr(am, f"{t}_tokens"))
            for a, am in agents
            for t in ("prompt", "completion")
        ],
    )  # fmt: skip
    w.family(
        "aios_agent_preemptions_total", "counter", "Preemptions of the agent's syscalls.",
        [({"agent": a}, am.preemptions) for a, am in agents],
    )  # fmt: skip
    w.family(
        "aios_agent_waiting_seconds_total", "counter", "Seconds the agent's syscalls spent queued.",
        [({"agent": a}, am.waiting_total) for a, am in agents],
    )  # fmt: skip
    w.family(
        "aios_agent_turnaround_seconds_total", "counter", "Seconds from submission to end, summed.",
        [({"agent": a}, am.turnaround_total) for a, am in agents],
    )  # fmt: skip
    w.histograms("aios_syscall_waiting_seconds", "Time a syscall spent queued.", m.waiting)
    w.histograms("aios_syscall_turnaround_seconds", "Time from submission to the final state.", m.turnaround)
    for name, value in sorted((server or {}).items()):
        w.family(f"aios_server_{name}", "gauge", f"Server gauge {name.replace('_', ' ')}.", [({}, value)])
    w.family(
        "aios_http_responses_total", "counter", "HTTP responses by status code.",
        [({"code": str(c)}, n) for c, n in sorted((responses or {}).items())],
    )  # fmt: skip
    return "\n".join(w.lines) + "\n"
