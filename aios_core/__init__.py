"""AIOS: an LLM agent operating system: a kernel that schedules the syscalls of many agents.

``import aios`` is cheap: names below are loaded on first use, and no agent framework, HTTP
client or model runtime is imported until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aios.adapters.registry import patch, patched, unpatch
    from aios.config import KernelConfig, load_config
    from aios.errors import (
        AccessDeniedError,
        AIOSError,
        BackendError,
        CancelledError,
        ConfigError,
        DeadlineExceededError,
        InvalidRequestError,
        QueueFullError,
    )
    from aios.kernel import Kernel, KernelThread
    from aios.sdk import (
        agent,
        connect,
        current_agent,
        kernel_stats,
        llm_call_tools,
        llm_chat,
        llm_chat_sync,
        llm_stream,
        llm_stream_sync,
        start_default_kernel,
        stop_default_kernel,
        syscall,
        syscall_sync,
        tool_syscall,
        tool_syscall_sync,
    )
    from aios.types import LLMRequest, LLMResult, ToolCall

_LAZY = {
    "AIOSError": "aios.errors",
    "AccessDeniedError": "aios.errors",
    "BackendError": "aios.errors",
    "CancelledError": "aios.errors",
    "ConfigError": "aios.errors",
    "DeadlineExceededError": "aios.errors",
    "InvalidRequestError": "aios.errors",
    "Kernel": "aios.kernel",
    "KernelConfig": "aios.config",
    "KernelThread": "aios.kernel",
    "LLMRequest": "aios.types",
    "LLMResult": "aios.types",
    "QueueFullError": "aios.errors",
    "ToolCall": "aios.types",
    "agent": "aios.sdk",
    "connect": "aios.sdk",
    "current_agent": "aios.sdk",
    "kernel_stats": "aios.sdk",
    "llm_call_tools": "aios.sdk",
    "llm_chat": "aios.sdk",
    "llm_chat_sync": "aios.sdk",
    "llm_stream": "aios.sdk",
    "llm_stream_sync": "aios.sdk",
    "load_config": "aios.config",
    "patch": "aios.adapters.registry",
    "patched": "aios.adapters.registry",
    "start_default_kernel": "aios.sdk",
    "stop_default_kernel": "aios.sdk",
    "syscall": "aios.sdk",
    "syscall_sync": "aios.sdk",
    "tool_syscall": "aios.sdk",
    "tool_syscall_sync": "aios.sdk",
    "unpatch": "aios.adapters.registry",
}

__all__ = [
    "AIOSError",
    "AccessDeniedError",
    "BackendError",
    "CancelledError",
    "ConfigError",
    "DeadlineExceededError",
    "InvalidRequestError",
    "Kernel",
    "KernelConfig",
    "KernelThread",
    "LLMRequest",
    "LLMResult",
    "QueueFullError",
    "ToolCall",
    "agent",
    "connect",
    "current_agent",
    "kernel_stats",
    "llm_call_tools",
    "llm_chat",
    "llm_chat_sync",
    "llm_stream",
    "llm_stream_sync",
    "load_config",
    "patch",
    "patched",
    "start_default_kernel",
    "stop_default_kernel",
    "syscall",
    "syscall_sync",
    "tool_syscall",
    "tool_syscall_sync",
    "unpatch",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aios' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
