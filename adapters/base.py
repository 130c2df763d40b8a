"""The patching base: adapters declare dotted patch targets; patching is reference-counted and
restores exactly what was there.

An ``Adapter`` names its framework and returns ``PatchTarget``s: a dotted path to an attribute
and a wrapper factory that receives the original and returns the replacement. ``Patcher.patch``
resolves every target, keeps the originals (read from the owner's ``__dict__``, so static and
class methods keep their descriptors, and inherited attributes are deleted again rather than
shadowed on restore), and installs the replacements; ``unpatch`` undoes it when the last user
leaves. Monkeypatches are process-global by nature, so the patcher is one object per process.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aios.errors import ConfigError

_MISSING = object()


class UnknownAdapterError(ConfigError):
    """``aios.patch(name)`` named no registered adapter."""


class FrameworkNotInstalledError(ConfigError):
    """The adapter's framework cannot be imported in this environment."""


@dataclass(frozen=True, slots=True)
class PatchTarget:
    """``path`` is ``module.Owner.attr``; ``wrap(original)`` returns the replacement."""

    path: str
    wrap: Callable[[Any], Any]


class Adapter(Protocol):
    """A framework shim: its name, the module that must import, and its patch targets."""

    name: str
    framework: str

    def targets(self) -> list[PatchTarget]:
        """The attributes to replace (called at patch time; may import the framework)."""
        ...


def resolve(path: str) -> tuple[Any, str]:
    """Import the longest module prefix of ``path``; return (owner object, attribute name)."""
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            obj = getattr(obj, name)
        if not hasattr(obj, parts[-1]):
            raise AttributeError(f"{path}: {obj!r} has no attribute {parts[-1]!r}")
        return obj, parts[-1]
    raise ImportError(f"no importable module in {path!r}")


@dataclass(slots=True)
class _Installed:
    owner: Any
    attr: str
    original: Any  # the owner's own __dict__ entry, or _MISSING when inherited
    replacement: Any


@dataclass(slots=True)
class _State:
    refs: int = 0
    installed: list[_Installed] = field(default_factory=list)


class Patcher:
    """Installs and removes adapters' patches; idempotent and reference-counted per adapter."""

    def __init__(self, lookup: Callable[[str], Adapter]):
        self._lookup = lookup
        self._lock = threading.RLock()
        self._state: dict[str, _State] = {}

    def patch(self, name: str) -> Callable[[], None]:
        """Patch ``name`` (or add a reference if already patched); returns the undo."""
        if not isinstance(name, str):
            raise UnknownAdapterError(f"an adapter name is a string, got {name!r}", field="adapter")
        with self._lock:
            state = self._state.get(name)
            if state is None:
                # Recorded only once installed: a failed patch leaves no trace.
                state = self._state[name] = _State(installed=self._install(self._lookup(name)))
            state.refs += 1
        done = False

        def undo() -> None:
            nonlocal done
            if not done:
                done = True
                self.unpatch(name)

        return undo

    def unpatch(self, name: str) -> None:
        """Drop one reference; the last one restores every original exactly."""
        with self._lock:
            state = self._state.get(name)
            if state is None or state.refs == 0:
                return
            state.refs -= 1
            if state.refs == 0:
                _restore(state.installed)
                del self._state[name]

    def refs(self, name: str) -> int:
        """How many users hold ``name`` patched."""
        with self._lock:
            state = self._state.get(name)
            return state.refs if state else 0

    def active(self) -> list[str]:
        """Names of the adapters currently patched."""
        with self._lock:
            return sorted(n for n, s in self._state.items() if s.refs)

    @contextmanager
    def patched(self, name: str) -> Iterator[None]:
        """``with patcher.patched("langchain"):`` — patched inside, restored after."""
        undo = self.patch(name)
        try:
            yield
        finally:
            undo()

    def _install(self, adapter: Adapter) -> list[_Installed]:
        try:
            importlib.import_module(adapter.framework)
        except ImportError as exc:
            raise FrameworkNotInstalledError(
                f"adapter {adapter.name!r} needs {adapter.framework!r}, which does not import here: {exc}; "
                f"install the framework (a tested set of versions: envs/{adapter.name}.lock, "
                f"or scripts/make-env.sh {adapter.name} for a ready environment)",
                field="adapter",
            ) from None
        installed: list[_Installed] = []
        try:
            for target in adapter.targets():
                try:
                    owner, attr = resolve(target.path)
                except (ImportError, AttributeError, ValueError, TypeError) as exc:
                    # ValueError/TypeError: import_module's answer to empty or relative names.
                    raise ConfigError(
                        f"adapter {adapter.name!r}: patch target {target.path!r} does not resolve "
                        f"(a framework version this adapter does not support?): {exc}",
                        field="targets",
                    ) from exc
                own = vars(owner).get(attr, _MISSING) if hasattr(owner, "__dict__") else _MISSING
                current = getattr(owner, attr) if own is _MISSING else own
                replacement = target.wrap(current)
                setattr(owner, attr, replacement)
                installed.append(_Installed(owner, attr, own, replacement))
        except BaseException:
            _restore(installed)  # all or nothing
            raise
        return installed


def _restore(installed: list[_Installed]) -> None:
    for item in reversed(installed):
        if item.original is _MISSING:
            if vars(item.owner).get(item.attr) is item.replacement:
                delattr(item.owner, item.attr)
        else:
            setattr(item.owner, item.attr, item.original)
