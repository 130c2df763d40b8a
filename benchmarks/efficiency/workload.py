"""Synthetic agents: a fixed pattern of LLM calls (prompt and output lengths) and tool calls.

A workload is plain data, built deterministically, so every mode runs exactly the same agents:
what differs between ``sequential``, ``direct`` and ``kernel`` is only how the calls reach the
backend. Prompts are made of distinct words so that one word is about one token (the stub counts
words; a real tokenizer gives roughly the same) and no two agents share a prompt prefix beyond the
instruction (so no server-side prefix cache makes one mode look better than another).
"""

from __future__ import annotations

from dataclasses import dataclass

from aios.errors import ConfigError
from aios.types import LLMRequest

_WORDS = [
    "river",
    "mountain",
    "lantern",
    "orchard",
    "copper",
    "violet",
    "harbor",
    "meadow",
    "signal",
    "thunder",
    "garden",
    "crystal",
    "falcon",
    "ember",
    "prairie",
    "glacier",
    "marble",
    "canyon",
    "willow",
    "beacon",
    "compass",
    "saddle",
    "timber",
    "quartz",
    "harvest",
    "lagoon",
    "pepper",
    "summit",
    "cinder",
    "ribbon",
]

#: Asks a chat model for a long answer, so its output tends to reach ``max_tokens``.
_INSTRUCTION = "Write a long, detailed story that uses these words, and do not stop early:"


@dataclass(slots=True, frozen=True)
class LLMStep:
    """One LLM call: about ``prompt_tokens`` of prompt, at most ``output_tokens`` generated."""

    prompt_tokens: int
    output_tokens: int


@dataclass(slots=True, frozen=True)
class ToolStep:
    """One tool call that takes ``seconds`` (simulated: an asyncio sleep, like waiting on I/O)."""

    seconds: float
    name: str = "wait"


Step = LLMStep | ToolStep


@dataclass(slots=True, frozen=True)
class AgentSpec:
    """One agent: its name, its group (``short``/``long`` in a mixed workload) and its steps."""

    name: str
    steps: tuple[Step, ...]
    group: str = "all"

    @property
    def llm_calls(self) -> int:
        """How many LLM steps."""
        return sum(isinstance(s, LLMStep) for s in self.steps)


@dataclass(slots=True, frozen=True)
class Workload:
    """A named set of agents, in submission order."""

    name: str
    agents: tuple[AgentSpec, ...]

    @property
    def llm_calls(self) -> int:
        """Total LLM calls."""
        return sum(a.llm_calls for a in self.agents)

    @property
    def tool_calls(self) -> int:
        """Total tool calls."""
        return sum(len(a.steps) - a.llm_calls for a in self.agents)

    @property
    def syscalls(self) -> int:
        """Total calls of either kind (each one is one syscall in kernel mode)."""
        return self.llm_calls + self.tool_calls

    def describe(self) -> dict[str, object]:
        """JSON-able summary."""
        groups: dict[str, int] = {}
        for a in self.agents:
            groups[a.group] = groups.get(a.group, 0) + 1
        return {
            "name": self.name,
            "agents": len(self.agents),
            "groups": groups,
            "llm_calls": self.llm_calls,
            "tool_calls": self.tool_calls,
            "output_tokens_requested": sum(
                s.output_tokens for a in self.agents for s in a.steps if isinstance(s, LLMStep)
            ),
        }


def _positive(value: int | float, name: str, *, zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise ConfigError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}", field=name)


def uniform(
    agents: int,
    *,
    llm_calls: int,
    prompt_tokens: int,
    output_tokens: int,
    tool_calls: int = 0,
    tool_seconds: float = 0.0,
    name: str = "uniform",
) -> Workload:
    """``agents`` identical agents; tool calls (if any) follow the first ``tool_calls`` LLM calls."""
    _positive(agents, "agents")
    _positive(llm_calls, "llm_calls")
    _positive(prompt_tokens, "prompt_tokens")
    _positive(output_tokens, "output_tokens")
    _positive(tool_calls, "tool_calls", zero=True)
    _positive(tool_seconds, "tool_seconds", zero=True)
    if tool_calls > llm_calls:
        raise ConfigError(
            f"tool_calls ({tool_calls}) may not exceed llm_calls ({llm_calls})", field="tool_calls"
        )
    steps: list[Step] = []
    for i in range(llm_calls):
        steps.append(LLMStep(prompt_tokens, output_tokens))
        if i < tool_calls:
            steps.append(ToolStep(tool_seconds))
    return Workload(name, tuple(AgentSpec(f"agent-{i:04d}", tuple(steps)) for i in range(agents)))


def mixed(
    *,
    long_agents: int,
    short_agents: int,
    long_calls: int,
    long_tokens: int,
    short_calls: int,
    short_tokens: int,
    prompt_tokens: int,
    name: str = "mixed",
) -> Workload:
    """A few agents with long generations submitted first, then many with short ones."""
    _positive(long_agents, "long_agents")
    _positive(short_agents, "short_agents")
    for value, field in (
        (long_calls, "long_calls"),
        (long_tokens, "long_tokens"),
        (short_calls, "short_calls"),
        (short_tokens, "short_tokens"),
        (prompt_tokens, "prompt_tokens"),
    ):
        _positive(value, field)
    longs = tuple(
        AgentSpec(f"long-{i:03d}", (LLMStep(prompt_tokens, long_tokens),) * long_calls, "long")
        for i in range(long_agents)
    )
    shorts = tuple(
        AgentSpec(f"short-{i:04d}", (LLMStep(prompt_tokens, short_tokens),) * short_calls, "short")
        for i in range(short_agents)
    )
    return Workload(name, longs + shorts)


def prompt_text(agent: str, index: int, tokens: int, *, salt: str = "") -> str:
    """A deterministic prompt of about ``tokens`` words, different per agent, call and ``salt``.

    Each run passes its own ``salt`` so that a server's prompt cache, warmed by an earlier mode
    with the same prompts, cannot make a later mode look faster.
    """
    seed = sum(map(ord, agent)) * 31 + index * 7
    words = [_WORDS[(seed + k * 13) % len(_WORDS)] for k in range(max(1, tokens - 16))]
    return f"{_INSTRUCTION} ({salt} {agent}, call {index}) {' '.join(words)}"


def request_for(
    agent: AgentSpec, index: int, step: LLMStep, *, model: str | None = None, salt: str = ""
) -> LLMRequest:
    """The LLM request of ``agent``'s ``index``-th step (greedy, so every mode does the same work)."""
    return LLMRequest(
        messages=[{"role": "user", "content": prompt_text(agent.name, index, step.prompt_tokens, salt=salt)}],
        model=model,
        max_tokens=step.output_tokens,
        temperature=0.0,
    )
