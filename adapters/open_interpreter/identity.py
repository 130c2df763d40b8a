"""Whose syscalls these are: the identity scope, else the interpreter's ``name``, else a default."""

from __future__ import annotations

from aios import sdk

AGENT_DEFAULT = "open_interpreter"


def agent_for(owner: object) -> str:
    """The calling agent: the identity scope if set, else ``owner.name`` if usable, else the default.

    ``owner`` is the ``OpenInterpreter`` instance (Open Interpreter has no ``name`` of its own;
    an application may give its instances one).
    """
    name = getattr(owner, "name", None)
    default = name if isinstance(name, str) and 0 < len(name) <= 200 else AGENT_DEFAULT
    return sdk.current_agent(default=default)
