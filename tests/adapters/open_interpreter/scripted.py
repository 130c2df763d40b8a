"""Scripted answers specific to Open Interpreter: calls of its ``execute`` tool."""

from __future__ import annotations

from aios.backends.scripted import Reply, tool_call


def execute(code: str, language: str = "python", call_id: str = "call_7") -> Reply:
    """A scripted call of Open Interpreter's ``execute`` tool."""
    return tool_call("execute", {"language": language, "code": code}, call_id=call_id)
