"""Open Interpreter's code execution (``Terminal.run``) as tool syscalls.

The code still runs where Open Interpreter runs it: in the calling thread, in its own terminal
(its Jupyter kernel, its shell processes), which keeps the thread affinity those clients expect.
The kernel sees a ``tool`` syscall named ``open_interpreter.<language>`` under the agent's
identity that spans the execution: the code starts only once the kernel has admitted the
syscall (its queue, concurrency caps and quotas apply), the syscall ends when the execution
does, and if the syscall's deadline passes first, the running code is stopped the way Open
Interpreter stops it (``Terminal.stop``). For ``run(stream=True)`` the span is the whole
iteration of the returned generator, whose chunks still reach the caller as they come.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from aios import sdk

from .identity import agent_for

#: How long leaving a span waits for the kernel to close its syscall.
CLOSE_TIMEOUT = 30.0


def tool_name(language: object) -> str:
    """The tool syscall's name for code in ``language``."""
    lang = str(language).strip().lower() if language is not None else ""
    return f"open_interpreter.{lang or 'unknown'}"


class WorkFailed(Exception):
    """Marks a span's syscall failed because the caller's work raised (which the caller re-raises)."""


class ToolSpan:
    """A tool syscall spanning work the caller does in its own thread: ``with ToolSpan(...):``.

    Entering waits until the kernel runs the syscall (or raises the kernel's error, in which case
    the work never starts). Leaving ends the syscall; an exception of the work is recorded as the
    syscall's failure and propagates unchanged. If the kernel ends the syscall first (deadline,
    shutdown), ``on_abort`` is called to stop the work, and leaving raises the kernel's error.
    While open, the span holds one of the kernel's worker threads (the SDK runs a synchronous
    tool body in one) and a holder thread of its own.
    """

    def __init__(self, name: str, agent: str, on_abort: Callable[[], None]):
        self.name = name
        self.agent = agent
        self._on_abort = on_abort
        self._gate = threading.Event()  # set when the syscall runs or has failed
        self._released = threading.Event()  # set when the caller's work is over
        self._lock = threading.Lock()
        self._open = False
        self._failed = False
        self.error: BaseException | None = None
        # The caller's context travels with the holder: it names the kernel the span belongs to.
        self._holder = threading.Thread(
            target=contextvars.copy_context().run, args=(self._hold,), name=f"aios-{name}", daemon=True
        )

    def __enter__(self) -> ToolSpan:
        self._holder.start()
        try:
            self._gate.wait()
        except BaseException:
            self._released.set()  # interrupted while queued: the syscall ends as soon as it runs
            raise
        with self._lock:
            if self.error is not None:
                raise self.error
            self._open = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._open = False
        # A closed stream (GeneratorExit) or an interrupt ends the work; only errors are failures.
        self._failed = isinstance(exc, Exception)
        self._released.set()
        self._holder.join(CLOSE_TIMEOUT)
        if exc is None and self.error is not None:
            raise self.error

    def _body(self) -> None:
        self._gate.set()
        self._released.wait()
        if self._failed:
            # Not the work's exception itself: re-raising it in the kernel would rewrite its
            # traceback and cause while the caller propagates it.
            raise WorkFailed(f"{self.name} raised")

    def _hold(self) -> None:
        try:
            sdk.tool_syscall_sync(self.name, self._body, agent=self.agent)
        except WorkFailed:
            return  # the caller propagates the work's own exception
        except BaseException as exc:
            with self._lock:
                self.error = exc
                running = self._open
            self._gate.set()
            if running:
                self._on_abort()


def wrap_terminal_run(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Terminal.run`` replaced: the same call, spanned by a tool syscall of the interpreter's agent."""

    @functools.wraps(original)
    def run(self: Any, language: Any, code: Any, stream: Any = False, display: Any = False) -> Any:
        name = tool_name(language)
        agent = agent_for(getattr(getattr(self, "computer", None), "interpreter", None))
        if stream:
            return _streamed(
                ToolSpan(name, agent, self.stop), original, self, language, code, stream, display
            )
        with ToolSpan(name, agent, self.stop):
            return original(self, language, code, stream=stream, display=display)

    return run


def _streamed(span: ToolSpan, original: Callable[..., Any], *args: Any) -> Iterator[Any]:
    self, language, code, stream, display = args
    with span:
        yield from original(self, language, code, stream=stream, display=display) or ()
