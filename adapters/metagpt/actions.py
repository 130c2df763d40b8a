"""MetaGPT's actions as kernel tool syscalls, and its roles as agent identities.

MetaGPT has no tool dispatcher: the unit of work is an ``Action`` whose ``run`` each subclass
overrides, and roles call it from ``_act`` (often overridden too, as in MetaGPT's own tutorials);
the code a model writes runs in ``ExecuteNbCode.run``, itself an action. So the adapter wraps every
``run`` defined on ``Action`` or a subclass, and each run becomes one tool syscall named by the
action's class name:

- classes that exist when patching are wrapped through patch targets (restored exactly);
- classes defined later are wrapped by a ``__pydantic_init_subclass__`` hook installed on
  ``Action``. Such a class keeps its wrapper after ``unpatch``, but the wrapper then calls straight
  through: it checks that the hook is still installed. The same holds for existing classes that
  no dotted path reaches (defined inside a function), wrapped in place at patch time.

A ``super().run(...)`` inside a run is part of the same syscall. The run executes on the caller's
event loop even when the process-default kernel runs on its own thread, because MetaGPT's objects
(notebook kernels, clients) belong to the caller's loop; its exceptions reach the caller unchanged.

A ``Role``'s entry points (``run``, ``think``, ``act``) run as agent ``role.name`` (else its
profile, else its class name), unless the caller chose an identity with ``aios.sdk.agent(...)``;
the LLM and tool syscalls inside carry it. Outside any role the identity is ``"metagpt"``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeGuard, TypeVar

from aios import sdk
from aios.adapters.base import PatchTarget
from aios.adapters.metagpt.llm import DEFAULT_AGENT

T = TypeVar("T")

#: Set on every function the adapter installs, so nothing is wrapped twice.
MARK = "__aios_metagpt__"
#: The pydantic hook called for each new subclass of a model (after the class is complete).
HOOK = "__pydantic_init_subclass__"
ROLE_ENTRIES = ("run", "think", "act")

#: The action whose run is in progress in this task: its nested ``super().run`` is no new syscall.
_running_action: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "aios_metagpt_action", default=None
)


def is_adapter_function(obj: object) -> bool:
    """Whether ``obj`` was installed by this adapter."""
    return getattr(obj, MARK, False) is True


def hook_installed(action_base: type) -> bool:
    """Whether ``action_base`` carries the adapter's subclass hook (i.e. MetaGPT is patched)."""
    return is_adapter_function(getattr(vars(action_base).get(HOOK), "__func__", None))


async def run_as_tool(name: str, body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``body()`` as tool syscall ``name``, on the caller's event loop, under the current agent."""
    caller = asyncio.get_running_loop()

    async def call() -> T:
        if asyncio.get_running_loop() is caller:
            return await body()
        # The process-default kernel runs on its own loop; the action belongs to the caller's.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(body(), caller))

    result: T = await sdk.tool_syscall(name, call, agent=sdk.current_agent(default=DEFAULT_AGENT))
    return result


def wrap_run(original: Callable[..., Coroutine[Any, Any, Any]], action_base: type) -> Callable[..., Any]:
    """``original`` (an ``Action.run``) as a tool syscall named by the action's class."""

    @functools.wraps(original)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _running_action.get() == id(self) or not hook_installed(action_base):
            return await original(self, *args, **kwargs)

        async def body() -> Any:
            token = _running_action.set(id(self))
            try:
                return await original(self, *args, **kwargs)
            finally:
                _running_action.reset(token)

        return await run_as_tool(type(self).__name__, body)

    setattr(run, MARK, True)
    return run


def _wrappable(run: Any) -> TypeGuard[Callable[..., Coroutine[Any, Any, Any]]]:
    return run is not None and inspect.iscoroutinefunction(run) and not is_adapter_function(run)


def _subclass_hook(action_base: type) -> Callable[[Any], Any]:
    def wrap(original: Any) -> Any:
        # No dotted path reaches a class defined in a function, so no patch target can restore
        # it: wrap it in place now, at install time. Like the classes the hook wraps, it calls
        # straight through whenever the hook is absent.
        for cls in _subclasses(action_base):
            run = vars(cls).get("run")
            if _wrappable(run) and not _dotted_path_reaches(cls):
                cls.run = wrap_run(run, action_base)  # type: ignore[attr-defined]

        def hook(cls: type, /, **kwargs: Any) -> None:
            if isinstance(original, classmethod):
                original.__get__(None, cls)(**kwargs)
            else:
                getattr(super(action_base, cls), HOOK)(**kwargs)
            run = vars(cls).get("run")
            if _wrappable(run):
                cls.run = wrap_run(run, action_base)  # type: ignore[attr-defined]

        setattr(hook, MARK, True)
        return classmethod(hook)

    return wrap


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _dotted_path_reaches(cls: type) -> bool:
    obj: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is cls


def action_targets(action_base: type) -> list[PatchTarget]:
    """The subclass hook on ``Action`` and the ``run`` of ``Action`` and its current subclasses.

    Subclasses no dotted path reaches (defined in a function) are wrapped in place when the hook
    is installed.
    """
    base_path = f"{action_base.__module__}.{action_base.__qualname__}"
    targets = [PatchTarget(f"{base_path}.{HOOK}", _subclass_hook(action_base))]
    for cls in dict.fromkeys([action_base, *_subclasses(action_base)]):
        if _wrappable(vars(cls).get("run")) and _dotted_path_reaches(cls):
            targets.append(
                PatchTarget(
                    f"{cls.__module__}.{cls.__qualname__}.run",
                    functools.partial(wrap_run, action_base=action_base),
                )
            )
    return targets


def role_identity(role: Any) -> str:
    """The agent name of a MetaGPT role: its name, else its profile, else its class name."""
    for candidate in (getattr(role, "name", None), getattr(role, "profile", None)):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:200]
    return type(role).__name__


def wrap_role_entry(original: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """A role entry point that runs as the role's agent identity unless one is already chosen."""

    @functools.wraps(original)
    async def entry(self: Any, *args: Any, **kwargs: Any) -> Any:
        if sdk.current_agent(default=""):
            return await original(self, *args, **kwargs)
        with sdk.agent(role_identity(self)):
            return await original(self, *args, **kwargs)

    setattr(entry, MARK, True)
    return entry


def role_targets(role_base: type) -> list[PatchTarget]:
    """``Role.run``, ``Role.think`` and ``Role.act`` under the role's identity."""
    prefix = f"{role_base.__module__}.{role_base.__qualname__}"
    return [PatchTarget(f"{prefix}.{name}", wrap_role_entry) for name in ROLE_ENTRIES]
