"""Open Interpreter's docs example, unmodified, on the real embedded model through the kernel."""

from __future__ import annotations

import pytest

from tests.adapters.open_interpreter.support import REASON, agent_kinds, import_warnings_ignored, terminate

with import_warnings_ignored():
    pytest.importorskip("interpreter", reason=REASON)

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interpreter.core.computer.terminal.terminal import Terminal

import aios
from aios import sdk
from aios.types import LLMResult

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]


@pytest.fixture
def embedded_default_kernel() -> Iterator[None]:
    """No default kernel before the test (the patched agent starts one: the embedded model); stopped after."""
    sdk.stop_default_kernel()
    yield
    sdk.stop_default_kernel()


@pytest.fixture
def singleton(tmp_path: Path) -> Iterator[Any]:
    """The module-level ``interpreter`` of the docs, saving its conversation under ``tmp_path``."""
    from interpreter import interpreter

    saved = interpreter.conversation_history_path
    interpreter.conversation_history_path = str(tmp_path)
    yield interpreter
    interpreter.conversation_history_path = saved
    interpreter.messages = []
    terminate(interpreter)


@pytest.mark.usefixtures("embedded_default_kernel")
def test_docs_example_runs_the_models_python_through_the_kernel(
    singleton: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Spies below the patched layer: what the kernel answered, and what Open Interpreter executed.
    answers: list[LLMResult] = []
    executed: list[tuple[str, str]] = []
    llm_chat_sync = sdk.llm_chat_sync
    streaming_run = Terminal._streaming_run

    def record_answer(*args: Any, **kwargs: Any) -> LLMResult:
        answers.append(llm_chat_sync(*args, **kwargs))
        return answers[-1]

    def record_execution(self: Any, language: str, code: str, display: bool = False) -> Any:
        executed.append((language, code))
        return streaming_run(self, language, code, display=display)

    monkeypatch.setattr(sdk, "llm_chat_sync", record_answer)
    monkeypatch.setattr(Terminal, "_streaming_run", record_execution)

    started = time.monotonic()
    with aios.patched("open_interpreter"):
        # The example, as Open Interpreter's docs write it (with a small max_tokens for the 135M model).
        from interpreter import interpreter

        interpreter.llm.model = "gpt-4o-mini"
        interpreter.llm.max_tokens = 48
        interpreter.auto_run = True
        interpreter.offline = True
        messages = interpreter.chat("What is 2+3? Use python.", display=False)
    elapsed = time.monotonic() - started

    # The first answer is the forced call of Open Interpreter's ``execute`` tool ...
    call = answers[0].tool_calls[0]
    arguments = json.loads(call.arguments)
    assert call.name == "execute" and arguments["language"] == "python"
    # ... whose code Open Interpreter ran, with the model's arguments, and fed back.
    assert executed[0] == ("python", arguments["code"])
    kinds = [(m["role"], m["type"]) for m in messages]
    assert kinds[:2] == [("assistant", "code"), ("computer", "console")]
    assert messages[0]["content"] == arguments["code"]
    assert kinds[-1] == ("assistant", "message") and messages[-1]["content"].strip()
    assert answers[-1].tool_calls == []
    # Every LLM call and every execution was a syscall of the agent.
    assert agent_kinds("open_interpreter") == {"llm": len(answers), "tool": len(executed)}
    assert list(tmp_path.glob("*.json")), "Open Interpreter saved the conversation as usual"
    print(f"docs example on the embedded model: {elapsed:.1f} s, {len(answers)} LLM syscalls")
