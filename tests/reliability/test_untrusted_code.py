"""Hostile programs through the kernel's code runner (``tool.call name="python"``), kernel alive.

The sandbox's own limits are tested in tests/managers/test_sandbox.py; here every program goes in
as a kernel syscall while another agent keeps making LLM and storage calls, and the test checks
that the program is contained, leaves no process behind, and that the other agent was served the
whole time.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from aios.backends.sim import SimBackend
from aios.chaos import ChaosLLMServer
from aios.config import KernelConfig
from aios.errors import DeadlineExceededError
from aios.kernel import Kernel
from aios.managers.builtin_tools import make_python_tool
from aios.managers.sandbox import UID_BASE, UID_SPAN
from aios.types import LLMRequest

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]
ROOT = os.geteuid() == 0
PROJECT = Path(__file__).resolve().parents[2]


def sandbox_processes() -> list[int]:
    """Live processes running as a sandbox uid."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            uid = int(fields["Uid"].split()[0])
            if UID_BASE <= uid < UID_BASE + UID_SPAN and not fields["State"].strip().startswith("Z"):
                found.append(int(entry.name))
        except (OSError, ValueError, KeyError):
            continue
    return found


async def no_sandbox_left(within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while sandbox_processes():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
async def kernel(tmp_path: Path) -> AsyncIterator[Kernel]:
    k = Kernel(
        KernelConfig(backends=[], data_dir=str(tmp_path), audit_file=False),
        backends={"sim": SimBackend(name="sim", capacity=4, token_time=0.001)},
        entry_points=False,
    )
    # The kernel's own code runner, with tighter limits than the default so each case is quick.
    k.services.tools.unregister("python")
    k.services.tools.register(make_python_tool(timeout_s=2.0, memory_mb=128, max_processes=16, concurrency=4))
    async with k:
        yield k


async def while_serving(kernel: Kernel, hostile: Callable[[], Awaitable[Any]]) -> tuple[Any, list[float]]:
    """Run ``hostile`` while another agent makes LLM and storage calls; (its outcome, their latencies)."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def bystander() -> None:
        i = 0
        while not done.is_set():
            start = time.monotonic()
            result = await kernel.llm(
                "bystander",
                LLMRequest(messages=[{"role": "user", "content": f"q{i}"}], max_tokens=4),
                timeout=10,
            )
            assert result.text == "t0 t1 t2 t3"
            assert (
                await kernel.syscall("bystander", "storage", "write", key="log", value=f"{i}", timeout=10)
                == i + 1
            )
            latencies.append(time.monotonic() - start)
            i += 1
            await asyncio.sleep(0.02)

    task = asyncio.create_task(bystander())
    try:
        outcome: Any = await hostile()
    except Exception as exc:
        outcome = exc
    finally:
        done.set()
        await task
    return outcome, latencies


def python(kernel: Kernel, code: str, timeout: float = 30) -> Callable[[], Awaitable[Any]]:
    return lambda: kernel.syscall(
        "mallory", "tool", "call", name="python", arguments={"code": code}, timeout=timeout
    )


def assert_served(latencies: list[float], at_least: int = 5) -> None:
    assert len(latencies) >= at_least, "the bystander was not served while the program ran"
    # Generous: the machine is shared; a stalled loop would show seconds, not tenths.
    assert max(latencies) < 1.5


async def test_a_fork_bomb_is_contained_and_leaves_no_process_while_others_are_served(kernel: Kernel) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    result, latencies = await while_serving(kernel, python(kernel, code))
    assert result.ok and result.value["timed_out"] is True
    assert await no_sandbox_left()
    assert_served(latencies)


async def test_an_infinite_loop_is_cut_at_the_runners_time_limit_while_others_are_served(
    kernel: Kernel,
) -> None:
    start = time.monotonic()
    result, latencies = await while_serving(kernel, python(kernel, "while True:\n    pass\n"))
    assert result.value["timed_out"] is True and result.value["exit_code"] < 0
    assert time.monotonic() - start < 2.0 + 5.0
    assert await no_sandbox_left()
    assert_served(latencies)


async def test_a_caller_deadline_shorter_than_the_runner_kills_the_program(kernel: Kernel) -> None:
    start = time.monotonic()
    code = "import os, time\nfor _ in range(4):\n    os.fork()\nwhile True:\n    time.sleep(0.01)\n"
    outcome, latencies = await while_serving(kernel, python(kernel, code, timeout=0.8))
    assert isinstance(outcome, DeadlineExceededError)
    assert time.monotonic() - start < 0.8 + 1.0
    assert await no_sandbox_left()
    assert_served(latencies)


async def test_a_memory_hog_runs_out_of_memory_in_the_sandbox_not_in_the_kernel(kernel: Kernel) -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))\n"
    before = _rss_mb()
    result, latencies = await while_serving(kernel, python(kernel, code))
    assert result.value["out_of_memory"] is True and result.value["exit_code"] != 0
    assert _rss_mb() - before < 50
    assert_served(latencies, at_least=1)  # the hog dies within a fraction of a second


@pytest.mark.skipif(
    not ROOT, reason="as a normal user the sandbox runs as that user: its files are the user's own"
)
async def test_writes_to_system_and_project_files_are_refused(kernel: Kernel, tmp_path: Path) -> None:
    targets = [
        "/etc/aios_rel_probe",
        str(PROJECT / "aios_rel_probe.txt"),
        str(tmp_path / "kernel_data.txt"),
        "/root/x",
    ]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('pwned')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print(type(exc).__name__)\n"
    )
    result, latencies = await while_serving(kernel, python(kernel, code))
    assert result.value["stdout"].split() == ["PermissionError"] * len(targets)
    assert not any(Path(t).exists() for t in targets)
    # The kernel's own storage file is intact and still serving.
    assert await kernel.syscall("a", "storage", "write", key="k", value="v") == 1
    assert_served(latencies, at_least=1)


@pytest.mark.skipif(not ROOT, reason="needs root: the sandbox runs as a throwaway uid only then")
async def test_a_program_leaves_nothing_in_world_writable_directories(kernel: Kernel) -> None:
    targets = [
        f"/tmp/aios_rel_probe_{os.getpid()}",
        f"/var/tmp/aios_rel_probe_{os.getpid()}",
        f"/dev/shm/aios_rel_probe_{os.getpid()}",
    ]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('left behind')\n"
        "    except OSError:\n"
        "        pass\n"
    )
    try:
        result = await python(kernel, code)()
        assert result.ok
        assert [t for t in targets if os.path.exists(t)] == []
    finally:
        for t in targets:
            if os.path.exists(t):
                os.unlink(t)


@pytest.mark.skipif(not ROOT, reason="needs root for a network namespace")
async def test_the_network_is_unreachable_even_the_kernels_own_loopback_server(kernel: Kernel) -> None:
    async with ChaosLLMServer() as own:
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            ports = [own.port, other.getsockname()[1]]
            code = (
                "import socket\n"
                f"for port in {ports!r}:\n"
                "    try:\n"
                "        socket.create_connection(('127.0.0.1', port), timeout=1)\n"
                "        print('CONNECTED')\n"
                "    except OSError as exc:\n"
                "        print('refused')\n"
                "try:\n"
                "    socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
                "    print('CONNECTED')\n"
                "except OSError:\n"
                "    print('unreachable')\n"
            )
            result, latencies = await while_serving(kernel, python(kernel, code))
        assert own.stats.requests == 0
    assert result.value["stdout"].split() == ["refused", "refused", "unreachable"]
    assert_served(latencies, at_least=1)


async def test_four_hostile_programs_at_once_do_not_stop_the_kernel(kernel: Kernel) -> None:
    programs = [
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "while True:\n    pass\n",
        "x = bytearray(2 * 1024 ** 3)\n",
        "import sys\nsys.stdout.write('y' * 10_000_000)\n",
    ]

    async def all_four() -> list[Any]:
        return list(await asyncio.gather(*(python(kernel, code)() for code in programs)))

    results, latencies = await while_serving(kernel, all_four)
    assert [r.ok for r in results] == [True] * 4
    assert results[0].value["timed_out"] and results[1].value["timed_out"]
    assert results[2].value["out_of_memory"] and results[3].value["truncated"]
    assert await no_sandbox_left()
    assert_served(latencies)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
