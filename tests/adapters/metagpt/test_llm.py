"""MetaGPT's provider calls become kernel LLM syscalls and come back in MetaGPT's own types."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("metagpt", reason="the metagpt adapter tests run in the metagpt environment")

from aios import sdk
from aios.adapters.registry import patched
from aios.backends.scripted import text, tool_call
from aios.errors import InvalidRequestError
from tests.adapters.metagpt.scripted import scripted_kernel
from tests.adapters.metagpt.support import MAX_TOKEN, Context, create_llm_instance

pytestmark = pytest.mark.usefixtures("metagpt_patched")


async def test_aask_streams_each_piece_to_log_llm_stream_and_returns_the_text(stream_log: list[str]) -> None:
    llm = Context().llm()
    assert llm.config.stream is True  # MetaGPT's default path
    async with scripted_kernel(text("def add(a, b)", pieces=["def ", "add", "(a, b)"])) as (_, backend):
        answer = await llm.aask("write add", system_msgs=["be brief"])
    assert answer == "def add(a, b)"
    assert stream_log == ["def ", "add", "(a, b)", "\n"]
    (request,) = backend.requests
    assert request.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "write add"},
    ]
    assert (request.model, request.max_tokens, request.temperature) == ("gpt-4o-mini", MAX_TOKEN, 0.0)
    assert request.stream is True


async def test_the_default_system_prompt_and_history_reach_the_kernel_in_order() -> None:
    llm = Context().llm()
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    async with scripted_kernel(text("fine")) as (_, backend):
        answer = await llm.aask("how are you?", format_msgs=history, stream=False)
    assert answer == "fine"
    assert backend.requests[0].messages == [
        {"role": "system", "content": "You are a helpful assistant."},
        *history,
        {"role": "user", "content": "how are you?"},
    ]
    assert backend.requests[0].stream is False


async def test_acompletion_returns_a_chat_completion_carrying_the_kernels_usage() -> None:
    from openai.types.chat import ChatCompletion

    llm = Context().llm()
    async with scripted_kernel(text("4", completion_tokens=3)) as _:
        rsp = await llm.acompletion([{"role": "user", "content": "2+2?"}])
    assert isinstance(rsp, ChatCompletion)
    assert llm.get_choice_text(rsp) == "4"
    choice = rsp.choices[0]
    assert (choice.finish_reason, choice.message.role, choice.message.tool_calls) == (
        "stop",
        "assistant",
        None,
    )
    assert rsp.usage is not None
    assert (rsp.usage.prompt_tokens, rsp.usage.completion_tokens, rsp.usage.total_tokens) == (11, 3, 14)
    assert rsp.model == "scripted-model"


async def test_costs_are_recorded_by_metagpts_cost_manager_from_kernel_token_counts() -> None:
    from metagpt.utils.cost_manager import CostManager

    llm = Context().llm()
    llm.cost_manager = CostManager()
    async with scripted_kernel(text("a", completion_tokens=3), text("b", completion_tokens=3)) as _:
        await llm.aask("one", stream=True)
        await llm.aask("two", stream=False)
    assert (llm.cost_manager.total_prompt_tokens, llm.cost_manager.total_completion_tokens) == (22, 6)


async def test_aask_code_offers_the_execute_tool_and_parses_the_models_tool_call() -> None:
    from metagpt.provider.constant import GENERAL_FUNCTION_SCHEMA

    llm = Context().llm()
    arguments = json.dumps({"language": "python", "code": "print(1)"})
    choice = {"type": "function", "function": {"name": "execute"}}
    async with scripted_kernel(tool_call("execute", arguments)) as (_, backend):
        code = await llm.aask_code([{"role": "user", "content": "print one"}], tool_choice=choice)
    assert code == {"language": "python", "code": "print(1)"}
    (request,) = backend.requests
    assert request.tools == [{"type": "function", "function": GENERAL_FUNCTION_SCHEMA}]
    assert request.tool_choice == choice
    assert request.messages == [{"role": "user", "content": "print one"}]


async def test_a_tool_call_comes_back_as_openai_tool_calls_with_null_content() -> None:
    llm = Context().llm()
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    async with scripted_kernel(tool_call("add", '{"a": 1, "b": 2}', call_id="call_9")) as (_, backend):
        rsp = await llm._achat_completion_function("add 1 and 2", tools=tools, n=3, stop="END")
    message = rsp.choices[0].message
    assert message.content is None
    assert rsp.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_9",
        "function",
        "add",
        '{"a": 1, "b": 2}',
    )
    (request,) = backend.requests
    # A plain string is MetaGPT's shorthand for one user message; ``n`` has no kernel meaning.
    assert request.messages == [{"role": "user", "content": "add 1 and 2"}]
    assert (request.tools, request.stop) == (tools, ["END"])


async def test_images_reach_the_kernel_as_content_parts() -> None:
    llm = Context().llm()
    async with scripted_kernel(text("a cat")) as (_, backend):
        await llm.aask("describe", images=["aGVsbG8="], stream=False)
    assert backend.requests[0].messages[-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aGVsbG8="}},
        ],
    }


async def test_calls_outside_any_role_run_as_agent_metagpt_unless_a_scope_is_set() -> None:
    llm = Context().llm()
    async with scripted_kernel(text("x"), text("y")) as (kernel, _):
        await llm.aask("a")
        with sdk.agent("boss"):
            await llm.aask("b")
        agents = kernel.stats()["agents"]
    assert agents["metagpt"]["by_kind"] == {"llm": 1}
    assert agents["boss"]["by_kind"] == {"llm": 1}


async def test_a_non_openai_api_type_is_served_by_the_kernel_while_patched() -> None:
    from metagpt.configs.llm_config import LLMConfig

    config = LLMConfig(api_type="ollama", model="llama3", base_url="http://127.0.0.1:9/api")
    llm = create_llm_instance(config)
    assert type(llm).__name__ == "KernelLLM"
    async with scripted_kernel(text("hi")) as (_, backend):
        assert await llm.aask("hello") == "hi"
    assert backend.requests[0].model == "llama3"


def test_after_unpatch_the_registry_gives_metagpts_own_providers_again() -> None:
    from metagpt.configs.llm_config import LLMConfig
    from metagpt.provider.ollama_api import OllamaLLM
    from metagpt.provider.openai_api import OpenAILLM

    config = LLMConfig(api_type="ollama", model="llama3", base_url="http://127.0.0.1:9/api")
    with patched("metagpt"):  # a second reference: leaving it keeps the fixture's patch
        assert type(create_llm_instance(config)).__name__ == "KernelLLM"
    assert type(create_llm_instance(config)).__name__ == "KernelLLM"
    from aios.adapters.registry import unpatch

    unpatch("metagpt")  # the fixture's reference: now nothing is patched
    try:
        assert type(create_llm_instance(config)) is OllamaLLM
        assert type(Context().llm()) is OpenAILLM
    finally:
        from aios.adapters.registry import patch

        patch("metagpt")  # give the fixture back the reference it will drop


async def test_a_bad_max_token_is_an_invalid_request_naming_metagpts_field() -> None:
    llm = Context().llm()
    llm.config = llm.config.model_copy(update={"max_token": 0})
    async with scripted_kernel() as _:
        with pytest.raises(InvalidRequestError) as info:
            await llm.aask("x")
    assert info.value.field == "llm.max_token"
