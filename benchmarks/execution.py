"""Model-written code, run only in the kernel's sandbox (``aios.managers.sandbox``).

Every program here runs in a subprocess with CPU, memory, time and process limits, as a fresh
unprivileged uid in its own temporary directory, with no network (see the sandbox module for what
holds on which machine). On top of that:

- ``check_program`` decides pass/fail of a test program. Exit status 0 is not enough: the harness
  prints a per-run random marker *after* the program has run, and only a run that printed it
  passes, so a candidate that exits early (``exit(0)``, ``os._exit(0)``, ``SystemExit``, a signal)
  fails instead of passing. The marker reaches the program on stdin, never in its source; a
  candidate that deliberately digs it out of the harness's frames is not defended against.
- ``PythonSession`` is a persistent Python session (MINT's ``<execute>``): each cell runs in a
  fresh sandbox after the earlier cells are replayed with their output discarded, so names
  defined earlier persist while every run keeps the sandbox's limits.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.errors import InvalidRequestError
from aios.managers.sandbox import Sandbox, SandboxResult
from aios.managers.tools import Tool

#: Most characters of a run's output shown to a model (observations must fit a small context).
OBSERVATION_CHARS = 2000
_SANDBOX_DIR = re.compile(r"/[^\s\"']*aios-sbx-[A-Za-z0-9_]+/")

_CHECK_HARNESS = r"""
import json, sys
_cfg = json.loads(sys.stdin.read())
_marker = _cfg.pop("marker")
_program = _cfg.pop("program")
del _cfg
_g = {"__name__": "__main__", "__builtins__": __builtins__}
exec(compile(_program, "program.py", "exec"), _g)
sys.stdout.flush()
sys.__stdout__.write("\n" + _marker + "\n")
sys.__stdout__.flush()
"""

_SESSION_HARNESS = r"""
import contextlib, io, json, sys, traceback
_cells = json.loads(sys.stdin.read())
_g = {"__name__": "__main__", "__builtins__": __builtins__}
for _cell in _cells[:-1]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(_cell, "<cell>", "exec"), _g)
        except BaseException:
            pass
try:
    exec(compile(_cells[-1], "<cell>", "exec"), _g)
except SystemExit:
    pass
except BaseException:
    sys.stdout.flush()
    traceback.print_exc(file=sys.stdout)
"""


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one sandboxed run."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 16
    max_output_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a test program passed, and why not."""

    passed: bool
    timed_out: bool
    exit_code: int
    output: str

    @property
    def reason(self) -> str:
        """A short explanation: passed, timeout, out of memory, or the end of the output."""
        if self.passed:
            return "passed"
        if self.timed_out:
            return "timed out"
        return f"failed (exit {self.exit_code}): {self.output[-500:].strip()}"


class CodeRunner:
    """Runs programs in the sandbox, at most ``concurrency`` at a time (they compete for cores)."""

    def __init__(self, *, concurrency: int = 2, sandbox: Sandbox | None = None):
        if concurrency < 1:
            raise InvalidRequestError("concurrency must be at least 1", field="concurrency")
        self.sandbox = sandbox or Sandbox()
        self._slots = asyncio.Semaphore(concurrency)

    async def run(
        self, code: str, limits: Limits = Limits(), *, stdin: str | None = None, workdir: Path | None = None
    ) -> SandboxResult:
        """Run ``code`` under ``limits``; never raises for what the code does."""
        async with self._slots:
            return await self.sandbox.run(
                code,
                timeout_s=limits.timeout_s,
                memory_mb=limits.memory_mb,
                max_processes=limits.max_processes,
                max_output_bytes=limits.max_output_bytes,
                stdin=stdin,
                workdir=workdir,
            )

    async def check_program(self, program: str, limits: Limits = Limits()) -> Verdict:
        """Run a test program; it passes only if it ran to its end and exited 0 in time."""
        marker = "AIOS-PASS-" + secrets.token_hex(16)
        r = await self.run(_CHECK_HARNESS, limits, stdin=json.dumps({"marker": marker, "program": program}))
        lines = r.stdout.rstrip("\n").splitlines()
        passed = r.ok and bool(lines) and lines[-1] == marker
        shown = r.stdout.replace(marker, "").strip()
        output = (shown + "\n" + r.stderr).strip()
        return Verdict(passed=passed, timed_out=r.timed_out, exit_code=r.exit_code, output=output)


def observation(result: SandboxResult) -> str:
    """A run's output as a model sees it (MINT's wording when there is none), cut to a bounded size."""
    if result.timed_out:
        text = (result.stdout + result.stderr).strip() + "\nTimeoutError: the code ran past its time limit"
    elif result.oom:
        text = (result.stdout + result.stderr).strip() + "\nMemoryError: the code ran out of memory"
    else:
        text = (result.stdout + result.stderr).strip()
    # The sandbox's random directory name would make the same run's prompts differ run to run.
    text = _SANDBOX_DIR.sub("", text).strip()
    if not text:
        return "[Executed Successfully with No Output]"
    if len(text) > OBSERVATION_CHARS:
        cut = len(text) - OBSERVATION_CHARS
        text = text[:OBSERVATION_CHARS] + f"\n... [{cut} more characters cut]"
    return text


@dataclass(slots=True)
class PythonSession:
    """A persistent Python session whose every cell runs in the sandbox (see the module doc)."""

    runner: CodeRunner
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=30.0))
    workdir: Path | None = None
    cells: list[str] = field(default_factory=list)

    async def execute(self, code: str) -> str:
        """Run one cell after the earlier ones; return its output (the observation)."""
        if not isinstance(code, str):
            raise InvalidRequestError("code must be a string", field="code")
        cells = [*self.cells, code]
        r = await self.runner.run(
            _SESSION_HARNESS, self.limits, stdin=json.dumps(cells), workdir=self.workdir
        )
        if not r.timed_out:
            # A cell that hangs is not kept: replaying it would hang every later cell.
            self.cells.append(code)
        return observation(r)


def python_tool(
    runner: CodeRunner, *, workdir: Path | None = None, limits: Limits = Limits(), name: str = "python"
) -> Tool:
    """A ``python(code)`` tool running each program in the sandbox (in ``workdir`` if given)."""

    async def python(code: str) -> dict[str, Any]:
        """Run a Python 3 program in an isolated sandbox and return its output and exit code.

        Args:
            code: A complete Python program; print what you want to see.
        """
        r = await runner.run(code, limits, workdir=workdir)
        return {"output": observation(r), "exit_code": r.exit_code}

    return Tool.from_function(python, name=name, concurrency=2, timeout=limits.timeout_s + 15)
