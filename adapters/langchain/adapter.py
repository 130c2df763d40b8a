"""The LangChain adapter: ``aios.patch("langchain")`` routes chat models and tools through the kernel.

Works for langchain-core 1.x and any chat model built on it (``ChatOpenAI`` included: its client
never sends a request while patched). LLM calls keep LangChain's types (``AIMessage`` with
``tool_calls``, ``AIMessageChunk`` with ``tool_call_chunks``, ``usage_metadata``); tool runs become
tool syscalls named by the tool. The syscalls belong to the agent of the enclosing
``with aios.sdk.agent(name):`` scope, else to the chat model's ``name``, else to ``"langchain"``.
"""

from __future__ import annotations

from aios.adapters.base import PatchTarget
from aios.adapters.langchain import chat, tools

_CHAT = "langchain_core.language_models.chat_models.BaseChatModel"


class LangChainAdapter:
    """Patch targets for langchain-core: four chat-model methods and four tool methods."""

    name = "langchain"
    framework = "langchain_core"

    def targets(self) -> list[PatchTarget]:
        """The base-class methods every chat model and tool call passes through."""
        return [
            PatchTarget(f"{_CHAT}._generate_with_cache", chat.wrap_generate_with_cache),
            PatchTarget(f"{_CHAT}._agenerate_with_cache", chat.wrap_agenerate_with_cache),
            PatchTarget(f"{_CHAT}.stream", chat.wrap_stream),
            PatchTarget(f"{_CHAT}.astream", chat.wrap_astream),
            PatchTarget("langchain_core.tools.base.BaseTool.run", tools.wrap_run),
            PatchTarget("langchain_core.tools.base.BaseTool.arun", tools.wrap_async),
            PatchTarget("langchain_core.tools.structured.StructuredTool.ainvoke", tools.wrap_async),
            PatchTarget("langchain_core.tools.simple.Tool.ainvoke", tools.wrap_async),
        ]


def make_adapter() -> LangChainAdapter:
    """The adapter instance ``aios.patch("langchain")`` uses."""
    return LangChainAdapter()
