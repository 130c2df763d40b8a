"""Code execution under the patch: ``Terminal.run`` spanned by one tool syscall of the agent."""

from __future__ import annotations

import pytest

from tests.adapters.open_interpreter.support import REASON, agent_kinds, import_warnings_ignored

with import_warnings_ignored():
    pytest.importorskip("interpreter", reason=REASON)

import threading
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aios
from aios import sdk
from aios.adapters.open_interpreter.execution import ToolSpan, tool_name, wrap_terminal_run
from aios.backends.scripted import ScriptedBackend
from aios.config import KernelConfig
from aios.errors import DeadlineExceededError, KernelNotRunningError

Scripted = Callable[..., ScriptedBackend]
Make = Callable[..., Any]


class FakeTerminal:
    """Stands in for Open Interpreter's ``Terminal``: records stops, belongs to an interpreter."""

    def __init__(self, interpreter: object = None):
        self.computer = SimpleNamespace(interpreter=interpreter)
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()


def agent_record(agent: str) -> dict[str, Any]:
    record: dict[str, Any] = sdk.kernel_stats()["agents"][agent]
    return record


@pytest.mark.usefixtures("oi_patched")
def test_run_returns_the_terminals_output_as_one_tool_syscall(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted()
    output = make_interpreter().computer.run("shell", "echo hello")

    assert [m["content"].strip() for m in output if m.get("format") == "output"] == ["hello"]
    assert agent_kinds("open_interpreter") == {"tool": 1}


@pytest.mark.usefixtures("oi_patched")
def test_streamed_run_yields_chunks_while_its_syscall_is_still_open(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted()
    chunks = make_interpreter().computer.run("shell", "echo one; echo two", stream=True)

    first = next(chunks)
    assert agent_kinds("open_interpreter") == {}  # the syscall spans the whole iteration
    rest = list(chunks)
    outputs = "".join(c["content"] for c in [first, *rest] if c.get("format") == "output")
    assert outputs.split() == ["one", "two"]
    assert agent_kinds("open_interpreter") == {"tool": 1}


def test_the_frameworks_own_exception_propagates_unchanged_and_fails_the_syscall(
    scripted: Scripted, make_interpreter: Make
) -> None:
    scripted()
    interp = make_interpreter()
    with pytest.raises(Exception) as unpatched:
        interp.computer.run("klingon", "qapla")  # no such language in Open Interpreter
    with aios.patched("open_interpreter"), pytest.raises(Exception) as patched:
        interp.computer.run("klingon", "qapla")

    assert (type(patched.value), str(patched.value)) == (type(unpatched.value), str(unpatched.value))
    record = agent_record("open_interpreter")
    assert (record["by_kind"], record["failed"]) == ({"tool": 1}, 1)


def test_work_exception_is_the_same_object_with_its_cause_intact(scripted: Scripted) -> None:
    scripted()
    cause = KeyError("k")
    boom = ValueError("boom")
    boom.__cause__ = cause

    with pytest.raises(ValueError) as err, ToolSpan("open_interpreter.python", "agent-x", lambda: None):
        raise boom
    assert err.value is boom and err.value.__cause__ is cause
    assert agent_record("agent-x")["failed"] == 1


def test_closing_a_stream_early_ends_its_syscall_and_the_frameworks_generator(scripted: Scripted) -> None:
    scripted()
    closed: list[bool] = []

    def original(self: Any, language: str, code: str, stream: bool = False, display: bool = False) -> Any:
        def chunks() -> Iterator[int]:
            try:
                yield 1
                yield 2
            finally:
                closed.append(True)

        return chunks()

    stream = wrap_terminal_run(original)(FakeTerminal(), "python", "x", stream=True)
    assert next(stream) == 1
    stream.close()

    assert closed == [True]
    record = agent_record("open_interpreter")
    assert (record["by_kind"], record["done"]) == ({"tool": 1}, 1)


def test_a_syscall_past_its_deadline_stops_the_running_code_and_raises(scripted: Scripted) -> None:
    scripted(default_timeout=0.3)
    terminal = FakeTerminal()

    def original(
        self: FakeTerminal, language: str, code: str, stream: bool = False, display: bool = False
    ) -> Any:
        assert self.stopped.wait(30), "the kernel's deadline never stopped the code"
        return [{"type": "console", "format": "output", "content": "interrupted"}]

    with pytest.raises(DeadlineExceededError):
        wrap_terminal_run(original)(terminal, "python", "while True: pass")
    assert terminal.stopped.is_set()


def test_code_never_starts_when_the_kernel_refuses_the_syscall() -> None:
    kernel_thread = sdk.start_default_kernel(
        KernelConfig(backends=[]), backends={"scripted": ScriptedBackend()}, entry_points=False
    )
    kernel_thread.stop()  # still the default kernel, but no longer running
    ran: list[str] = []

    def original(self: Any, language: str, code: str, stream: bool = False, display: bool = False) -> Any:
        ran.append(code)
        return []

    try:
        with pytest.raises(KernelNotRunningError):
            wrap_terminal_run(original)(FakeTerminal(), "python", "print(1)")
    finally:
        sdk.stop_default_kernel()
    assert ran == []


def test_runs_belong_to_the_identity_scope_else_the_interpreters_name(scripted: Scripted) -> None:
    scripted()

    def original(self: Any, language: str, code: str, stream: bool = False, display: bool = False) -> Any:
        return []

    run = wrap_terminal_run(original)
    with sdk.agent("carol"):
        run(FakeTerminal(SimpleNamespace(name="dora")), "shell", "true")
    run(FakeTerminal(SimpleNamespace(name="dora")), "shell", "true")
    run(FakeTerminal(), "shell", "true")

    assert agent_kinds("carol") == {"tool": 1}
    assert agent_kinds("dora") == {"tool": 1}
    assert agent_kinds("open_interpreter") == {"tool": 1}


@pytest.mark.parametrize(
    ("language", "name"),
    [
        ("python", "open_interpreter.python"),
        (" Shell ", "open_interpreter.shell"),
        (None, "open_interpreter.unknown"),
    ],
)
def test_tool_syscall_is_named_after_the_language(language: object, name: str) -> None:
    assert tool_name(language) == name
