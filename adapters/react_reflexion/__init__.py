"""Native agents on the SDK: ReAct and Reflexion (the AIOS paper's two)."""

from aios.adapters.react_reflexion.agents import (
    AgentRuntime,
    KernelRuntime,
    ReActAgent,
    ReflexionAgent,
    ReflexionResult,
    Step,
    Trajectory,
)

__all__ = [
    "AgentRuntime",
    "KernelRuntime",
    "ReActAgent",
    "ReflexionAgent",
    "ReflexionResult",
    "Step",
    "Trajectory",
]
