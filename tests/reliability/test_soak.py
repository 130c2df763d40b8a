"""The soak, CI size: 40,000 mixed syscalls in one kernel; memory, tasks, files, processes stay flat.

The full size (100,000 syscalls) is ``scripts/reliability/soak.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from aios.chaos.soak import SoakConfig, SoakReport, run_soak

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


@pytest.fixture(scope="module")
def report() -> SoakReport:
    return asyncio.run(run_soak(SoakConfig(syscalls=40_000, agents=50, checkpoints=10, python_every=10_000)))


def test_every_soak_syscall_succeeded_or_failed_typed(report: SoakReport) -> None:
    assert report.syscalls == 40_000
    assert report.untyped == 0
    assert report.errors == {}
    assert report.ok == 40_000


def test_resident_memory_and_live_objects_stay_flat_over_the_second_half(report: SoakReport) -> None:
    growth = report.growth()  # from 20,000 to 40,000 syscalls: both bounded rings are full by then
    assert report.samples[4].ring_records == report.samples[-1].ring_records
    # A leak of one small object per syscall would show about 20,000 more blocks (measured by
    # planting one: +24,700), and as many tracked objects if it is a container.
    assert growth["allocated_blocks"] < 6_000, report.summary()["allocated_blocks"]
    assert growth["objects_outside_rings"] < 1_500, growth
    assert growth["rss_kb"] < 4 * 1024, report.summary()["rss_kb"]


def test_no_task_file_handle_thread_or_process_outlives_the_kernel(report: SoakReport) -> None:
    base, after = report.baseline, report.after_stop
    assert base is not None and after is not None
    assert after.tasks == base.tasks
    assert after.fds == base.fds
    assert after.children == 0
    assert after.threads <= base.threads + 8  # the loop's default executor keeps a few idle workers
    assert (after.running, after.queued, after.timers, after.snapshots) == (0, 0, 0, 0)


def test_while_running_the_kernels_books_hold_only_what_is_in_flight(report: SoakReport) -> None:
    for s in report.samples:
        assert s.running <= 50 and s.timers <= 50 and s.queued <= 50
        assert s.tasks <= 1 + 50 + 50 + 4  # main, agents, one per running syscall, helpers
        assert s.children <= 1  # at most the one sandboxed run in flight
    assert report.samples[-1].done == 40_000
