"""kill -9 of ``aios serve`` during storage and memory writes, then restart: CI size, 4 rounds.

The full size (20 rounds) is ``scripts/reliability/crash_restart.py``. What survives is stated in
``aios.chaos.crash``: every acknowledged storage write, and every memory entry that had been
evicted to storage; entries still in RAM at the kill are lost by design (memory is RAM-only).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aios.backends.sim import SimBackend
from aios.chaos.crash import CrashConfig, CrashReport, run_crash_restart
from aios.config import KernelConfig
from aios.kernel import Kernel

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

pytest.importorskip("uvicorn", reason="aios serve needs the server extra")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> CrashReport:
    workdir = tmp_path_factory.mktemp("crash")
    return asyncio.run(run_crash_restart(CrashConfig(rounds=4, writers=6, seed=7), workdir))


def test_no_acknowledged_storage_write_is_lost_across_kill_9_and_restart(report: CrashReport) -> None:
    assert report.kills == report.rounds == 4
    assert report.killed_in_flight >= 4  # the kills landed while requests were waiting for answers
    assert report.storage_acked >= 100
    assert report.storage_lost == []
    assert report.storage_found == report.storage_acked


def test_the_database_passes_its_integrity_check_after_every_kill(report: CrashReport) -> None:
    assert report.integrity == ["ok"] * 4


def test_memory_entries_evicted_before_the_kill_are_in_storage_with_their_exact_text(
    report: CrashReport,
) -> None:
    assert report.memory_seen_evicted >= 20
    assert report.memory_evicted_lost == []
    assert report.memory_in_storage >= report.memory_seen_evicted
    # Entries that were still in RAM at a kill are gone (memory is RAM-only): counted, by design.
    assert report.memory_not_in_storage >= 1
    assert report.memory_in_storage + report.memory_not_in_storage == report.memory_acked


def test_memory_entries_evicted_before_the_kill_are_retrievable_by_id_after_restart(
    report: CrashReport,
) -> None:
    assert report.memory_evicted_retrievable == report.memory_in_storage


async def test_a_restarted_kernel_can_get_and_search_memory_its_predecessor_evicted(tmp_path: Path) -> None:
    def kernel() -> Kernel:
        cfg = KernelConfig(backends=[], data_dir=str(tmp_path), audit_file=False, memory_budget_bytes=1024)
        return Kernel(cfg, backends={"sim": SimBackend(name="sim")}, entry_points=False)

    async with kernel() as first:
        ids = [
            await first.syscall("a", "memory", "add", text=f"entry {i} about topic{i} " + "x" * 150)
            for i in range(12)
        ]
        evicted = [e.id for e in await first.syscall("a", "memory", "recent", n=100) if not e.resident]
        assert evicted and set(evicted) <= set(ids)
    async with kernel() as second:
        stored = await second.syscall("a", "storage", "list", prefix="memory/")
        assert sorted(stored) == sorted(f"memory/{i}" for i in evicted)  # the data did survive
        entry = await second.syscall("a", "memory", "get", entry_id=evicted[0])
        assert entry.text.startswith("entry ")
        hits = await second.syscall("a", "memory", "search", query=entry.text.split()[3])
        assert [h.entry.id for h in hits][:1] == [evicted[0]]
