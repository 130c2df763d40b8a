"""Helpers shared by the Open Interpreter adapter tests (they never import Open Interpreter)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from aios import sdk

REASON = "needs open-interpreter: scripts/make-env.sh open_interpreter"


@contextlib.contextmanager
def import_warnings_ignored() -> Iterator[None]:
    """Silence what importing Open Interpreter 0.4.3 warns about (its use of ``pkg_resources``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        warnings.filterwarnings("ignore", message="Deprecated call to `pkg_resources.declare_namespace")
        yield


def agent_kinds(agent: str) -> dict[str, int]:
    """``by_kind`` syscall counts of ``agent`` on the default kernel ({} if it made none)."""
    agents: dict[str, Any] = sdk.kernel_stats()["agents"]
    return dict(agents[agent]["by_kind"]) if agent in agents else {}


def terminate(interp: Any) -> None:
    """Stop an interpreter's languages and reap their processes.

    Open Interpreter's own ``terminate`` signals a shell process but never waits for it or
    closes its stderr, which leaves a ResourceWarning for whichever test runs next.
    """
    processes = [
        lang.process
        for lang in interp.computer.terminal._active_languages.values()
        if getattr(lang, "process", None) is not None
    ]
    interp.computer.terminate()
    for process in processes:
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()
