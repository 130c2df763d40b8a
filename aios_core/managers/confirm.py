"""Confirmation of destructive operations: who answers "may agent A delete B's key k?".

The access manager decides *whether* a destructive operation needs a confirmation; a ``Confirmer``
decides the answer. Confirmers are small and pluggable:

- ``DenyConfirmer``: nobody can answer, so the answer is no (the kernel's default).
- ``TerminalConfirmer``: asks y/N on a real terminal; without a TTY, or with no answer before its
  timeout, the answer is no.
- ``AllowListConfirmer``: rules for automation, each an (agent, owner, kind, op, key) pattern set.
- ``CallbackConfirmer``: a function (sync or async) answers, e.g. a UI or a test.

A confirmer only returns ``True`` or ``False``; the access manager bounds it with a timeout and
turns a failure of the confirmer itself into a refusal, so a buggy confirmer can never let a
destructive operation through.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TextIO, runtime_checkable

from aios.errors import InvalidRequestError

#: Operations that may need a confirmation. "overwrite" is a write over a live value.
DESTRUCTIVE_OPS: frozenset[str] = frozenset({"overwrite", "delete", "rollback"})


@dataclass(slots=True, frozen=True)
class ConfirmationRequest:
    """One question to a confirmer: may ``actor`` do ``op`` on ``target`` in ``owner``'s ``kind``?"""

    actor: str
    owner: str
    kind: str
    op: str
    target: str | None

    def describe(self) -> str:
        """A one-line, human-readable form of the question."""
        where = f"{self.owner}'s {self.kind}"
        what = f" key {self.target!r}" if self.target is not None else ""
        return f"agent {self.actor!r} wants to {self.op}{what} in {where}"


@runtime_checkable
class Confirmer(Protocol):
    """Answers whether a destructive operation may go ahead."""

    async def confirm(self, request: ConfirmationRequest) -> bool:
        """True to allow the operation, False to refuse it."""
        ...


class DenyConfirmer:
    """Refuses everything: the default when nobody is there to answer."""

    async def confirm(self, request: ConfirmationRequest) -> bool:
        """Always False."""
        return False


class CallbackConfirmer:
    """Delegates the answer to a function, plain or async."""

    def __init__(self, callback: Callable[[ConfirmationRequest], bool | Awaitable[bool]]):
        if not callable(callback):
            raise InvalidRequestError("callback must be callable", field="callback")
        self._callback = callback

    async def confirm(self, request: ConfirmationRequest) -> bool:
        """The callback's answer; anything but ``True`` counts as no."""
        answer = self._callback(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer is True


@dataclass(slots=True, frozen=True)
class ConfirmRule:
    """An allow rule; each field is a shell-style glob (``fnmatch``) matched case-sensitively."""

    agent: str = "*"
    op: str = "*"
    key: str = "*"
    owner: str = "*"
    kind: str = "*"

    def matches(self, request: ConfirmationRequest) -> bool:
        """Whether every field of the request matches this rule's pattern."""
        # A request with no target (the whole resource) only matches a rule whose key is "*".
        key_ok = self.key == "*" if request.target is None else fnmatch.fnmatchcase(request.target, self.key)
        return (
            key_ok
            and fnmatch.fnmatchcase(request.actor, self.agent)
            and fnmatch.fnmatchcase(request.op, self.op)
            and fnmatch.fnmatchcase(request.owner, self.owner)
            and fnmatch.fnmatchcase(request.kind, self.kind)
        )


class AllowListConfirmer:
    """Allows what a rule matches; anything else goes to ``fallback`` (by default: refused)."""

    def __init__(self, rules: Iterable[ConfirmRule], *, fallback: Confirmer | None = None):
        self.rules: tuple[ConfirmRule, ...] = tuple(rules)
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, ConfirmRule):
                raise InvalidRequestError(f"rule {i} is not a ConfirmRule", field="rules")
        self._fallback = fallback if fallback is not None else DenyConfirmer()

    async def confirm(self, request: ConfirmationRequest) -> bool:
        """True when a rule matches, else the fallback's answer."""
        if any(rule.matches(request) for rule in self.rules):
            return True
        return await self._fallback.confirm(request)


class TerminalConfirmer:
    """Asks a person on the controlling terminal; no TTY, no answer in time, or not "y" means no.

    On Unix the answer is read through the event loop (``add_reader``), so a timeout or a
    cancellation leaves nothing behind. Where the loop cannot watch the stream (Windows), a daemon
    thread reads the line; after a timeout that thread waits for the next line and discards it.
    """

    def __init__(self, *, timeout: float = 30.0, stdin: TextIO | None = None, stdout: TextIO | None = None):
        if not timeout > 0:
            raise InvalidRequestError("timeout must be positive", field="timeout")
        self.timeout = timeout
        self._stdin = stdin
        self._stdout = stdout
        # One question on the terminal at a time: interleaved prompts would be unanswerable.
        self._lock = asyncio.Lock()

    async def confirm(self, request: ConfirmationRequest) -> bool:
        """Prompt ``[y/N]`` and wait up to ``timeout`` seconds for the answer."""
        stdin = self._stdin if self._stdin is not None else sys.stdin
        stdout = self._stdout if self._stdout is not None else sys.stdout
        if stdin is None or not _isatty(stdin):
            return False
        async with self._lock:
            stdout.write(f"[aios] {request.describe()}. Allow? [y/N] ")
            stdout.flush()
            try:
                async with asyncio.timeout(self.timeout):
                    line = await _read_line(stdin)
            except TimeoutError:
                stdout.write("\n[aios] no answer; refused.\n")
                stdout.flush()
                return False
        return line.strip().lower() in {"y", "yes"}


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):  # closed or detached stream
        return False


async def _read_line(stream: TextIO) -> str:
    """Read one line from ``stream`` without blocking the event loop."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        fd = -1
    if fd >= 0:
        chunks: list[bytes] = []

        def on_readable() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError as exc:
                if not fut.done():
                    fut.set_exception(exc)
                return
            chunks.append(data)
            # EOF (b"") or a full line ends the answer; a terminal in canonical mode sends whole lines.
            if (not data or b"\n" in data) and not fut.done():
                fut.set_result(b"".join(chunks).decode(errors="replace").split("\n", 1)[0])

        try:
            loop.add_reader(fd, on_readable)
        except (NotImplementedError, ValueError, OSError):
            fd = -1
        else:
            try:
                return await fut
            finally:
                loop.remove_reader(fd)

    def read_in_thread() -> None:
        try:
            line = stream.readline()
        except (OSError, ValueError):
            line = ""
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading
            loop.call_soon_threadsafe(lambda: None if fut.done() else fut.set_result(line))

    threading.Thread(target=read_in_thread, name="aios-confirm-stdin", daemon=True).start()
    return await fut
