"""The seeded fault-injection run: many agents, a mix of syscalls, chaos everywhere, nobody hangs.

``run_workload(WorkloadConfig(...))`` builds one kernel with two LLM cores, an ``openai`` backend
talking real HTTP to a ``ChaosLLMServer`` on loopback (core ``http``) and a ``ChaosBackend`` over
the simulated backend (core ``chaos``), plus the chaos tools, a ``ChaosPolicy``, a ``ChaosContext``
and a ``ChaosStore`` under the storage manager. Each agent makes its calls one after another (LLM,
memory, storage, tool, in a seeded mix); all agents run at once.

Agents named ``x-*`` are *exposed* (the plan's ``scope``): only their calls can draw faults.
Agents named ``c-*`` share every core, tool, lock and file with them but never draw a fault.
``compare(faulty, clean)`` checks a faulty run against a fault-free run of the same seed: every
agent that no fault reached must have exactly the results it had without faults.

Every call is bounded twice: the kernel's deadline (``timeout=``), and an outer watchdog at
deadline + ``hang_margin_s`` that counts the call as hung if the kernel did not answer by then.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aios.backends.openai_backend import OpenAIBackend
from aios.backends.sim import SimBackend
from aios.chaos.backend import ChaosBackend
from aios.chaos.components import (
    SAFE_CONTEXT_SITES,
    SAFE_POLICY_SITES,
    ChaosContext,
    ChaosPolicy,
    ChaosStore,
    LabelBook,
    install,
)
from aios.chaos.faults import Fault, FaultLog, FaultPlan
from aios.chaos.http_stub import ChaosLLMServer
from aios.chaos.tools import make_blocking_chaos_tool, make_chaos_tool
from aios.config import KernelConfig
from aios.errors import AIOSError
from aios.kernel import Kernel
from aios.managers.tools import ToolResult
from aios.scheduler.policies import TimeSlice, make_policy
from aios.types import LLMRequest

EXPOSED = "x-"
CLEAN = "c-"

#: Per-call fault probabilities for exposed agents, per component (each component draws alone).
DEFAULT_RATES: Mapping[Fault, float] = MappingProxyType(
    {
        Fault.RATE_LIMIT: 0.03,
        Fault.SERVER_ERROR: 0.02,
        Fault.UNAVAILABLE: 0.02,
        Fault.LATENCY: 0.03,
        Fault.DROP_BEFORE: 0.02,
        Fault.DROP_DURING: 0.03,
        Fault.MALFORMED: 0.02,
        Fault.HANG: 0.01,
        Fault.CRASH: 0.02,
        Fault.GARBAGE: 0.03,
    }
)
OPS = ("llm_http", "llm_chaos", "memory", "storage", "tool")


@dataclass(slots=True)
class WorkloadConfig:
    """The knobs of one run (the defaults are the full-size run: 200 agents x 50 calls)."""

    seed: int = 8
    agents: int = 200
    calls_per_agent: int = 50
    #: Share of agents that are exposed to faults.
    exposed: float = 0.5
    faults: bool = True
    rates: dict[Fault, float] = field(default_factory=lambda: dict(DEFAULT_RATES))
    policy_sites: frozenset[str] = SAFE_POLICY_SITES
    context_sites: frozenset[str] = SAFE_CONTEXT_SITES
    llm_timeout: float = 15.0
    service_timeout: float = 10.0
    hang_margin_s: float = 1.0
    #: Slots of the HTTP core and of the chaos (simulated) core. The chaos core is wide so that,
    #: on a loaded machine, its queue does not push fault-free calls past their deadlines.
    capacity: int = 16
    chaos_capacity: int = 64
    slice_tokens: int = 8
    http_timeout: float = 1.0
    http_retries: int = 2
    data_dir: str | None = None


@dataclass(slots=True)
class CallRecord:
    """What one call returned (normalized so runs compare), how long it took, whether it hung."""

    agent: str
    index: int
    op: str
    label: str
    ok: bool
    value: Any
    elapsed: float
    timeout: float
    hung: bool = False
    typed: bool = True


@dataclass(slots=True)
class RunReport:
    """The numbers of one run."""

    calls: int
    by_op: dict[str, int]
    ok: int
    errors: dict[str, int]
    untyped: list[str]
    late: int
    hung: int
    faults: dict[str, int]
    http_requests: int
    retries: int
    retries_by_cause: dict[str, int]
    retried_after_output: list[str]
    agents_hit: int
    elapsed_s: float
    records: dict[tuple[str, int], CallRecord] = field(repr=False, default_factory=dict)
    hit_agents: set[str] = field(repr=False, default_factory=set)
    #: The fault log's keys: labels of the calls a fault reached (storage faults: owner names).
    fault_keys: set[str] = field(repr=False, default_factory=set)

    def summary(self) -> dict[str, Any]:
        """The report without the per-call records, JSON-able."""
        return {
            "calls": self.calls,
            "by_op": self.by_op,
            "ok": self.ok,
            "errors": self.errors,
            "untyped": self.untyped[:20],
            "late": self.late,
            "hung": self.hung,
            "faults_injected": self.faults,
            "faults_total": sum(self.faults.values()),
            "http_requests": self.http_requests,
            "retries": self.retries,
            "retries_by_cause": self.retries_by_cause,
            "retried_after_output": self.retried_after_output,
            "agents_hit": self.agents_hit,
            "elapsed_s": round(self.elapsed_s, 2),
        }


def agent_names(cfg: WorkloadConfig) -> list[str]:
    """``x-0..`` (exposed) then ``c-..`` (clean), ``cfg.agents`` in all."""
    n_exposed = round(cfg.agents * cfg.exposed)
    return [f"{EXPOSED}{i}" for i in range(n_exposed)] + [
        f"{CLEAN}{i}" for i in range(cfg.agents - n_exposed)
    ]


async def run_workload(cfg: WorkloadConfig) -> RunReport:
    """Run the whole workload once and report (see the module docstring)."""
    plan = FaultPlan(cfg.seed, cfg.rates if cfg.faults else {}, scope=EXPOSED)
    log = FaultLog()
    with tempfile.TemporaryDirectory(prefix="aios-chaos-") as tmp:
        data_dir = cfg.data_dir or tmp
        async with ChaosLLMServer(plan=plan, log=log, spike_s=0.2) as stub:
            kernel = _build_kernel(cfg, plan, log, stub.base_url, data_dir)
            started = time.monotonic()
            async with kernel:
                per_agent = await asyncio.gather(*(_agent(kernel, cfg, name) for name in agent_names(cfg)))
            elapsed = time.monotonic() - started
        records = {(r.agent, r.index): r for rs in per_agent for r in rs}
        return _report(records, log, stub, elapsed)


def _build_kernel(
    cfg: WorkloadConfig, plan: FaultPlan, log: FaultLog, base_url: str, data_dir: str
) -> Kernel:
    book = LabelBook()
    http = OpenAIBackend(
        name="http",
        base_url=base_url,
        model="chaos-stub",
        capacity=cfg.capacity,
        timeout=cfg.http_timeout,
        max_retries=cfg.http_retries,
    )
    sim = SimBackend(name="chaos", capacity=cfg.chaos_capacity, token_time=0.0005)
    chaos = ChaosBackend(name="chaos", inner=sim, plan=plan, log=log, spike_s=0.2)
    policy = ChaosPolicy(
        make_policy("fair", TimeSlice(tokens=cfg.slice_tokens)), plan, log, sites=cfg.policy_sites, book=book
    )
    config = KernelConfig(
        backends=[],
        data_dir=str(Path(data_dir)),
        memory_budget_bytes=2048,
        audit_file=False,
        metrics_keep=1000,
    )
    kernel = Kernel(config, backends={"http": http, "chaos": chaos}, policy=policy, entry_points=False)
    install(
        kernel,
        context=ChaosContext(plan, log, book=book, sites=cfg.context_sites),
        store=ChaosStore(kernel.services.storage.backend, plan, log),
    )
    kernel.services.tools.register(make_chaos_tool(plan, log, timeout=1.0))
    kernel.services.tools.register(make_blocking_chaos_tool(plan, log, timeout=0.5, hang_s=0.8))
    return kernel


async def _agent(kernel: Kernel, cfg: WorkloadConfig, agent: str) -> list[CallRecord]:
    rng = random.Random(f"{cfg.seed}/{agent}")
    out: list[CallRecord] = []
    memory_ids: list[str] = []
    for i in range(cfg.calls_per_agent):
        op = rng.choice(OPS)
        label = f"{agent}/{i}/{op}"
        timeout = cfg.llm_timeout if op.startswith("llm") else cfg.service_timeout
        call = _call(kernel, agent, op, label, i, rng, timeout, memory_ids)
        out.append(await _watch(agent, i, op, label, call, timeout, cfg.hang_margin_s))
    return out


def _call(
    kernel: Kernel,
    agent: str,
    op: str,
    label: str,
    i: int,
    rng: random.Random,
    timeout: float,
    memory_ids: list[str],
) -> Any:
    """The coroutine of call ``i`` (its arguments drawn from the agent's own seeded stream)."""
    if op.startswith("llm"):
        request = LLMRequest(
            messages=[{"role": "user", "content": label}],
            model="http" if op == "llm_http" else "chaos",
            max_tokens=rng.randint(4, 24),
        )
        return _llm(kernel, agent, request, timeout)
    if op == "memory":
        if memory_ids and rng.random() < 0.5:
            return _memory_read(kernel, agent, rng.choice(memory_ids), label, timeout)
        return _memory_add(kernel, agent, label, memory_ids, timeout)
    if op == "storage":
        key = f"k{rng.randrange(4)}"
        if rng.random() < 0.5:
            return kernel.syscall(agent, "storage", "write", key=key, value=label, timeout=timeout)
        return _storage_read(kernel, agent, key, timeout)
    name = "chaos_blocking_tool" if rng.random() < 0.25 else "chaos_tool"
    return _tool(kernel, agent, name, label, i, timeout)


async def _llm(kernel: Kernel, agent: str, request: LLMRequest, timeout: float) -> Any:
    result = await kernel.llm(agent, request, timeout=timeout)
    return result.text


async def _memory_add(kernel: Kernel, agent: str, label: str, ids: list[str], timeout: float) -> Any:
    # The second word is unique to this entry, so a search for it has exactly one best hit.
    unique = "u" + label.replace("/", "q").replace("-", "")
    text = f"note {unique} " + " ".join(f"w{j}" for j in range(len(label) % 7 + 3))
    entry_id = await kernel.syscall(agent, "memory", "add", text=text, timeout=timeout)
    ids.append(entry_id)
    return "added"


async def _memory_read(kernel: Kernel, agent: str, entry_id: str, label: str, timeout: float) -> Any:
    entry = await kernel.syscall(agent, "memory", "get", entry_id=entry_id, timeout=timeout)
    hits = await kernel.syscall(agent, "memory", "search", query=entry.text.split()[1], k=3, timeout=timeout)
    return [entry.text, hits[0].entry.text if hits else None]


async def _storage_read(kernel: Kernel, agent: str, key: str, timeout: float) -> Any:
    try:
        value: bytes = await kernel.syscall(agent, "storage", "read", key=key, timeout=timeout)
    except AIOSError as exc:
        if type(exc).__name__ == "KeyNotFoundError":
            return "absent"
        raise
    return value.decode()


async def _tool(kernel: Kernel, agent: str, name: str, label: str, i: int, timeout: float) -> Any:
    res: ToolResult = await kernel.syscall(
        agent, "tool", "call", name=name, arguments={"label": label, "n": i}, timeout=timeout
    )
    return res.value if res.ok else f"tool-error:{res.error.type if res.error else '?'}"


async def _watch(
    agent: str, i: int, op: str, label: str, call: Any, timeout: float, margin: float
) -> CallRecord:
    """Await one call under the watchdog; every outcome becomes a record, nothing escapes."""
    start = time.monotonic()
    rec = CallRecord(agent, i, op, label, ok=False, value=None, elapsed=0.0, timeout=timeout)
    try:
        # A grace beyond the margin, so a late answer is measured (late) before it is called hung.
        async with asyncio.timeout(timeout + margin + 4.0):
            rec.value = await call
            rec.ok = True
    except TimeoutError as exc:
        if isinstance(exc, AIOSError):
            rec.value = type(exc).__name__
        else:
            rec.hung, rec.value = True, "HUNG"
    except AIOSError as exc:
        rec.value = type(exc).__name__
    except Exception as exc:
        rec.typed, rec.value = False, f"{type(exc).__name__}: {exc}"
    rec.elapsed = time.monotonic() - start
    return rec


def _report(
    records: dict[tuple[str, int], CallRecord], log: FaultLog, stub: ChaosLLMServer, elapsed: float
) -> RunReport:
    hit_agents = {key.split("/", 1)[0].split("|", 1)[0] for key in log.by_key}
    errors: Counter[str] = Counter(r.value for r in records.values() if not r.ok and r.typed and not r.hung)
    return RunReport(
        calls=len(records),
        by_op=dict(Counter(r.op for r in records.values())),
        ok=sum(r.ok for r in records.values()),
        errors=dict(errors),
        untyped=[f"{r.label}: {r.value}" for r in records.values() if not r.typed],
        late=sum(r.elapsed > r.timeout + 1.0 for r in records.values()),
        hung=sum(r.hung for r in records.values()),
        faults=log.summary(),
        http_requests=stub.stats.requests,
        retries=stub.retries(),
        retries_by_cause=stub.retries_by_cause(),
        retried_after_output=stub.retried_after_output(),
        agents_hit=len(hit_agents),
        elapsed_s=elapsed,
        records=records,
        hit_agents=hit_agents,
        fault_keys=set(log.by_key),
    )


def compare(faulty: RunReport, clean: RunReport) -> list[str]:
    """Agents that no fault reached but whose results differ from the fault-free run (must be [])."""
    agents = {a for a, _ in clean.records}
    bad = []
    for agent in sorted(agents - faulty.hit_agents):
        mine = [(r.ok, r.value) for (a, _), r in sorted(faulty.records.items()) if a == agent]
        ref = [(r.ok, r.value) for (a, _), r in sorted(clean.records.items()) if a == agent]
        if mine != ref:
            bad.append(agent)
    return bad
