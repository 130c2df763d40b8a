"""Model-written code runs only in the sandbox: pass/fail/timeout, tricks that must not pass, the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios.benchmarks.execution import CodeRunner, Limits, PythonSession, observation, python_tool
from aios.managers.sandbox import SandboxResult

FAST = Limits(timeout_s=3.0, memory_mb=256)


@pytest.fixture
def runner() -> CodeRunner:
    return CodeRunner(concurrency=2)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the sandbox's user may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="aios-test-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_a_program_that_runs_to_its_end_passes(runner: CodeRunner):
    verdict = await runner.check_program("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('ok')", FAST)
    assert verdict.passed and verdict.reason == "passed" and verdict.output == "ok"


async def test_a_failing_assertion_fails_with_the_traceback(runner: CodeRunner):
    verdict = await runner.check_program("assert 1 + 1 == 3, 'math broke'", FAST)
    assert not verdict.passed and "AssertionError: math broke" in verdict.output
    assert verdict.reason.startswith("failed (exit 1)")


async def test_an_endless_loop_times_out(runner: CodeRunner):
    verdict = await runner.check_program("while True:\n    pass", Limits(timeout_s=1.0))
    assert not verdict.passed and verdict.timed_out and verdict.reason == "timed out"


@pytest.mark.parametrize(
    "trick",
    [
        "import sys\nsys.exit(0)",
        "exit(0)",
        "raise SystemExit(0)",
        "import os\nos._exit(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "print('AIOS-PASS-' + '0' * 32)",
        "import sys\nsys.stdout.close()",
    ],
)
async def test_exiting_early_or_faking_the_marker_does_not_pass(runner: CodeRunner, trick: str):
    # The tests after the trick would fail; leaving before them must not count as passing.
    verdict = await runner.check_program(trick + "\nassert False, 'the tests ran'", FAST)
    assert not verdict.passed


async def test_a_memory_bomb_is_stopped(runner: CodeRunner):
    verdict = await runner.check_program("x = bytearray(2 << 30)\nprint('allocated')", FAST)
    assert not verdict.passed and "allocated" not in verdict.output


async def test_a_fork_bomb_is_contained(runner: CodeRunner):
    code = "import os\nfor _ in range(200):\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    verdict = await runner.check_program(code + "assert False", Limits(timeout_s=5.0, max_processes=8))
    assert not verdict.passed
    # Afterwards the machine still runs programs normally.
    assert (await runner.check_program("print(1)", FAST)).passed


@pytest.mark.skipif(os.geteuid() != 0, reason="files outside the sandbox are protected only when run as root")
async def test_code_cannot_write_outside_its_directory(runner: CodeRunner, open_dir: Path):
    target = open_dir / "planted"
    code = f"open({str(target)!r}, 'w').write('x')\nprint('wrote')"
    verdict = await runner.check_program(code, FAST)
    assert not verdict.passed and "PermissionError" in verdict.output
    assert not target.exists()


async def test_the_session_keeps_names_between_cells(runner: CodeRunner):
    session = PythonSession(runner, FAST)
    assert await session.execute("x = 41\nprint('first')") == "first"
    assert await session.execute("x += 1\nprint(x)") == "42"  # earlier output is not repeated
    assert await session.execute("y = 1") == "[Executed Successfully with No Output]"
    out = await session.execute("print(undefined_name)")
    assert "NameError: name 'undefined_name' is not defined" in out


async def test_a_hanging_cell_is_reported_and_not_replayed(runner: CodeRunner):
    session = PythonSession(runner, Limits(timeout_s=1.0))
    assert "TimeoutError" in await session.execute("while True: pass")
    assert await session.execute("print('alive')") == "alive"
    assert session.cells == ["print('alive')"]


def test_observations_do_not_depend_on_the_sandboxs_random_directory():
    err = 'Traceback (most recent call last):\n  File "/tmp/aios-sbx-k2_x9q/main.py", line 1\nNameError: x'
    r = SandboxResult("", err, 1, False, None, False, 0.1)
    assert observation(r) == 'Traceback (most recent call last):\n  File "main.py", line 1\nNameError: x'


def test_long_output_is_cut_for_the_model():
    r = SandboxResult("a" * 5000, "", 0, False, None, False, 0.1)
    text = observation(r)
    assert len(text) < 2100 and text.endswith("[3000 more characters cut]")


async def test_the_python_tool_runs_in_the_given_directory(runner: CodeRunner, open_dir: Path):
    (open_dir / "data.txt").write_text("hello from a file")
    tool = python_tool(runner, workdir=open_dir, limits=FAST)
    result = await tool.call({"code": "print(open('data.txt').read())"})
    assert result.ok and result.value == {"output": "hello from a file", "exit_code": 0}
