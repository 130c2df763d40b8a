"""MetaGPT's tutorial agent, unmodified, on the embedded model through the default kernel."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

from aios import sdk
from aios.config import KernelConfig
from tests.adapters.metagpt.support import MAX_TOKEN, Action, Message, Role

# ---- MetaGPT's "Agent 101" tutorial agent (RunnableCoder), as its documentation writes it ----


class SimpleWriteCode(Action):
    PROMPT_TEMPLATE: str = """
    Write a python function that can {instruction} and provide two runnable test cases.
    Return ```python your_code_here ``` with NO other texts,
    your code:
    """

    name: str = "SimpleWriteCode"

    async def run(self, instruction: str):  # type: ignore[no-untyped-def]
        prompt = self.PROMPT_TEMPLATE.format(instruction=instruction)

        rsp = await self._aask(prompt)

        code_text = SimpleWriteCode.parse_code(rsp)

        return code_text

    @staticmethod
    def parse_code(rsp):  # type: ignore[no-untyped-def]
        pattern = r"```python(.*)```"
        match = re.search(pattern, rsp, re.DOTALL)
        code_text = match.group(1) if match else rsp
        return code_text


class SimpleRunCode(Action):
    name: str = "SimpleRunCode"

    async def run(self, code_text: str):  # type: ignore[no-untyped-def]
        result = subprocess.run(["python3", "-c", code_text], capture_output=True, text=True)
        code_result = result.stdout
        return code_result


class RunnableCoder(Role):
    name: str = "Alice"
    profile: str = "RunnableCoder"

    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.set_actions([SimpleWriteCode, SimpleRunCode])
        self._set_react_mode(react_mode="by_order")

    async def _act(self) -> Message:
        # By choosing the Action by order under the hood
        # todo will be first SimpleWriteCode() then SimpleRunCode()
        todo = self.rc.todo

        msg = self.get_memories(k=1)[0]  # find the most k recent messages
        result = await todo.run(msg.content)

        msg = Message(content=result, role=self.profile, cause_by=type(todo))
        self.rc.memory.add(msg)
        return msg


# ---- the test ----


@pytest.mark.model
@pytest.mark.slow
async def test_runnable_coder_runs_on_the_embedded_model_with_its_syscalls_under_its_name(
    metagpt_patched: None, no_default_kernel: None, stream_log: list[str]
) -> None:
    sdk.start_default_kernel(KernelConfig())
    role = RunnableCoder()
    started = time.monotonic()
    await role.run("write a function that adds two numbers")
    elapsed = time.monotonic() - started
    alice = sdk.kernel_stats()["agents"]["Alice"]
    print(f"RunnableCoder on the embedded model: {elapsed:.1f} s, {alice['completion_tokens']} tokens")
    print(f"model: {''.join(stream_log)!r}; ran: {role.get_memories()[-1].content!r}")

    assert alice["by_kind"] == {"llm": 1, "tool": 2}
    assert (alice["done"], alice["failed"]) == (3, 0)
    assert 0 < alice["completion_tokens"] <= MAX_TOKEN
    user, written, ran = role.get_memories()
    assert user.content == "write a function that adds two numbers"
    # The model's streamed answer, parsed by the action, is the code SimpleRunCode received and ran.
    model_text = "".join(stream_log)
    assert model_text.endswith("\n") and model_text.strip()
    assert written.content == SimpleWriteCode.parse_code(model_text[:-1])
    rerun = subprocess.run(["python3", "-c", written.content], capture_output=True, text=True, timeout=60)
    assert ran.content == rerun.stdout
