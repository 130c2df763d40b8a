"""The seeded fault-injection run, CI size: 1,000 syscalls from 40 agents against every chaos component.

The full size (10,000 syscalls from 200 agents) is ``scripts/reliability/fault_injection.py``.
"""

from __future__ import annotations

import pytest

from aios.chaos.workload import RunReport, WorkloadConfig, compare, run_workload

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

SIZE = {"seed": 8, "agents": 40, "calls_per_agent": 25}


@pytest.fixture(scope="module")
def runs() -> tuple[RunReport, RunReport]:
    """The faulty run and the fault-free run of the same seed (shared by the tests below)."""
    import asyncio

    faulty = asyncio.run(run_workload(WorkloadConfig(**SIZE)))  # type: ignore[arg-type]
    clean = asyncio.run(run_workload(WorkloadConfig(**SIZE, faults=False)))  # type: ignore[arg-type]
    return faulty, clean


def test_every_syscall_ends_with_a_result_or_a_typed_error_within_its_deadline_plus_one_second(
    runs: tuple[RunReport, RunReport],
) -> None:
    faulty, _ = runs
    assert faulty.calls == 1000
    assert faulty.hung == 0
    assert faulty.untyped == []
    late = [r for r in faulty.records.values() if r.elapsed > r.timeout + 1.0]
    assert late == []
    assert faulty.ok + sum(faulty.errors.values()) == faulty.calls
    assert set(faulty.by_op) == {"llm_http", "llm_chaos", "memory", "storage", "tool"}


def test_faults_of_every_component_were_really_injected(runs: tuple[RunReport, RunReport]) -> None:
    faulty, _ = runs
    components = {name.split(".")[0] for name in faulty.faults}
    assert components == {"backend", "http", "tool", "policy", "context", "store"}
    assert sum(faulty.faults.values()) >= 60
    kinds = {name.rsplit(".", 1)[1] for name in faulty.faults}
    assert {
        "rate_limit",
        "server_error",
        "unavailable",
        "drop_before",
        "drop_during",
        "malformed",
        "crash",
    } <= kinds
    assert len(faulty.errors) >= 4  # several distinct typed errors reached callers


def test_retries_happen_only_before_output_and_are_counted(runs: tuple[RunReport, RunReport]) -> None:
    faulty, clean = runs
    assert faulty.retries > 0
    assert faulty.retried_after_output == []
    assert clean.retries == 0
    # Transient faults were absorbed by retries: most LLM calls over HTTP still succeeded.
    http = [r for r in faulty.records.values() if r.op == "llm_http"]
    assert sum(r.ok for r in http) / len(http) > 0.85


def test_agents_no_fault_reached_get_exactly_their_fault_free_results(
    runs: tuple[RunReport, RunReport],
) -> None:
    faulty, clean = runs
    assert clean.ok == clean.calls and clean.faults == {}
    spared = {a for a, _ in clean.records} - faulty.hit_agents
    assert len(spared) >= 20  # every clean agent, and any exposed one the dice spared
    assert all(a.startswith("x-") for a in faulty.hit_agents)
    assert compare(faulty, clean) == []


def test_calls_no_fault_reached_of_hit_agents_are_unaffected_too(runs: tuple[RunReport, RunReport]) -> None:
    faulty, clean = runs
    # Stateless calls (LLM and tool) of hit agents: those no fault reached answer as without faults.
    checked = 0
    for key, rec in faulty.records.items():
        stateless = rec.op not in ("memory", "storage")
        if rec.agent in faulty.hit_agents and stateless and rec.label not in faulty.fault_keys:
            assert (rec.ok, rec.value) == (clean.records[key].ok, clean.records[key].value), rec.label
            checked += 1
    assert checked >= 100
