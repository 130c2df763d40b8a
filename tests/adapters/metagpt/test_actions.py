"""Action runs become tool syscalls on the caller's loop, under the role's identity."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

from aios import sdk
from aios.adapters.metagpt.actions import is_adapter_function
from aios.adapters.registry import patched
from aios.backends.scripted import ScriptedBackend, text
from aios.config import KernelConfig
from tests.adapters.metagpt.scripted import scripted_kernel
from tests.adapters.metagpt.support import Action, Message, Role

CODE_REPLY = "```python\ndef add(a, b):\n    return a + b\n```"
PROMPT = "Write a python function that can {instruction}.\nReturn ```python your_code_here ```."


class SimpleWriteCode(Action):
    """MetaGPT's tutorial action: ask for code, keep what is between the fences."""

    PROMPT_TEMPLATE: str = PROMPT
    name: str = "SimpleWriteCode"

    async def run(self, instruction: str) -> str:
        rsp = await self._aask(self.PROMPT_TEMPLATE.format(instruction=instruction))
        match = re.search(r"```python(.*)```", rsp, re.DOTALL)
        return match.group(1) if match else rsp


class SimpleCoder(Role):
    """MetaGPT's tutorial role with one action and its own ``_act`` (the adapter needs neither)."""

    name: str = "Alice"
    profile: str = "SimpleCoder"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.set_actions([SimpleWriteCode])

    async def _act(self) -> Message:
        todo = self.rc.todo
        msg = self.get_memories(k=1)[0]
        code_text = await todo.run(msg.content)
        return Message(content=code_text, role=self.profile, cause_by=type(todo))


async def test_a_role_run_is_a_tool_syscall_per_action_with_the_llm_call_inside_under_its_name(
    metagpt_patched: None,
) -> None:
    async with scripted_kernel(text(CODE_REPLY)) as (kernel, backend):
        msg = await SimpleCoder().run("add two numbers")
        agents = kernel.stats()["agents"]
    assert msg is not None
    assert msg.content == "\ndef add(a, b):\n    return a + b\n"
    assert set(agents) == {"Alice"}
    assert agents["Alice"]["by_kind"] == {"llm": 1, "tool": 1}
    system, user = backend.requests[0].messages
    assert system["role"] == "system" and "named Alice" in system["content"]
    assert user == {"role": "user", "content": PROMPT.format(instruction="add two numbers")}


async def test_an_explicit_agent_scope_overrides_the_role_name(metagpt_patched: None) -> None:
    async with scripted_kernel(text(CODE_REPLY)) as (kernel, _):
        with sdk.agent("team-7"):
            await SimpleCoder().run("add two numbers")
        agents = kernel.stats()["agents"]
    assert set(agents) == {"team-7"}
    assert agents["team-7"]["by_kind"] == {"llm": 1, "tool": 1}


async def test_an_action_class_defined_after_patching_is_wrapped_and_inert_after_unpatch() -> None:
    with patched("metagpt"):

        class Shout(Action):
            async def run(self, words: str) -> str:
                return words.upper()

        assert is_adapter_function(vars(Shout)["run"])
        async with scripted_kernel() as (kernel, _):
            assert await Shout().run("hey") == "HEY"
            assert kernel.stats()["agents"]["metagpt"]["by_kind"] == {"tool": 1}
    async with scripted_kernel() as (kernel, _):
        assert await Shout().run("still") == "STILL"
        assert kernel.stats()["agents"] == {}


async def test_a_local_action_class_defined_before_patching_is_wrapped_and_inert_after_unpatch() -> None:
    class Echo(Action):
        async def run(self, words: str) -> str:
            return words

    original = vars(Echo)["run"]
    with patched("metagpt"):
        assert is_adapter_function(vars(Echo)["run"])
        async with scripted_kernel() as (kernel, _):
            assert await Echo().run("hi") == "hi"
            assert kernel.stats()["agents"]["metagpt"]["by_kind"] == {"tool": 1}
    assert vars(Echo)["run"].__wrapped__ is original
    async with scripted_kernel() as (kernel, _):
        assert await Echo().run("again") == "again"
        assert kernel.stats()["agents"] == {}


async def test_super_run_inside_a_run_is_part_of_the_same_syscall(metagpt_patched: None) -> None:
    class Base(Action):
        async def run(self) -> str:
            return "base"

    class Child(Base):
        async def run(self) -> str:
            return "child+" + await super().run()

    async with scripted_kernel() as (kernel, _):
        assert await Child().run() == "child+base"
        stats = kernel.stats()["agents"]["metagpt"]
    assert (stats["by_kind"], stats["done"]) == ({"tool": 1}, 1)


async def test_an_action_exception_reaches_the_caller_unchanged_and_the_syscall_fails(
    metagpt_patched: None,
) -> None:
    error = ValueError("bad input")

    class Boom(Action):
        async def run(self) -> str:
            raise error

    async with scripted_kernel() as (kernel, _):
        with pytest.raises(ValueError) as info:
            await Boom().run()
        stats = kernel.stats()["agents"]["metagpt"]
    assert info.value is error
    assert (stats["by_kind"], stats["failed"]) == ({"tool": 1}, 1)


async def test_with_the_default_kernel_actions_run_on_the_callers_loop(
    metagpt_patched: None, no_default_kernel: None, stream_log: list[str]
) -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    class Where(Action):
        async def run(self, history: list[Message]) -> str:
            seen.append(asyncio.get_running_loop())
            return await self._aask(history[-1].content)

    class Solo(Role):
        name: str = "Bob"

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.set_actions([Where])

    backend = ScriptedBackend(text("done", pieces=["do", "ne"]))
    sdk.start_default_kernel(KernelConfig(backends=[]), backends={"scripted": backend}, entry_points=False)
    msg = await Solo().run("go")
    backend.check()
    assert isinstance(msg, Message) and msg.content == "done"
    assert seen == [asyncio.get_running_loop()]
    # Through another thread's kernel the answer arrives whole, then MetaGPT's closing newline.
    assert stream_log == ["done", "\n"]
    assert sdk.kernel_stats()["agents"]["Bob"]["by_kind"] == {"llm": 1, "tool": 1}


@pytest.mark.slow
async def test_generated_code_runs_in_execute_nb_code_as_a_tool_syscall(
    metagpt_patched: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metagpt.actions.di.execute_nb_code import ExecuteNbCode

    # Jupyter writes connection files and an IPython profile; keep them out of the home directory.
    for var in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    executor = ExecuteNbCode()
    try:
        async with scripted_kernel() as (kernel, _):
            ok_output = await executor.run("print(6 * 7)")
            bad_output, bad_ok = await executor.run("1 / 0")
            stats = kernel.stats()["agents"]["metagpt"]
    finally:
        await executor.terminate()
    assert ok_output == ("42\n", True)
    assert bad_ok is False and "ZeroDivisionError" in bad_output
    assert (stats["by_kind"], stats["done"]) == ({"tool": 2}, 2)
