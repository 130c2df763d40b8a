"""What a benchmark is to the harness: tasks, the episode an agent acts in, the agent's output, a score.

A benchmark is three things (``Benchmark``): a loader (``load``: a local path or the usual
source → ``Task`` records), a prompt protocol (``episode``: the prompt, tools and answer checks
one agent gets for one task) and a scorer (``score``, and ``summarize`` over many results).
Frameworks see only the ``Episode``, never the task's reference answer.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aios.errors import ConfigError
from aios.managers.tools import Tool

#: A JSON value as kept in the results file.
JSON = Any

SelfCheck = Callable[[str | None], Awaitable[tuple[bool, str]]]


class DataNotFoundError(ConfigError):
    """A benchmark's data is not where the loader looked; the message says how to obtain it."""


@dataclass(frozen=True, slots=True)
class Task:
    """One benchmark item: its id, the raw row (JSON-able) and an optional group (level, subset)."""

    id: str
    data: Mapping[str, JSON]
    group: str | None = None


@dataclass(slots=True)
class Episode:
    """What one agent gets for one task: prompt, tools and the environment's answer checks.

    ``finish`` replaces the framework's answer tool where the environment judges answers as they
    are given (MINT); ``is_done`` tells the framework the environment ended the episode;
    ``self_check`` gives feedback from what the agent could see itself (never the reference),
    for frameworks that retry (Reflexion).
    """

    prompt: str
    tools: list[Tool] = field(default_factory=list)
    finish: Tool | None = None
    system: str | None = None
    max_steps: int = 6
    is_done: Callable[[], bool] | None = None
    self_check: SelfCheck | None = None
    workdir: Path | None = None
    files: list[Path] = field(default_factory=list)
    #: Benchmark-private state of the episode (the MINT environment, a checkout path...).
    state: Any = None
    _owned_dirs: list[Path] = field(default_factory=list)

    def done(self) -> bool:
        """Whether the environment has ended the episode."""
        return self.is_done is not None and self.is_done()

    def own(self, directory: Path) -> Path:
        """Remove ``directory`` when the episode is closed."""
        self._owned_dirs.append(directory)
        return directory

    def close(self) -> None:
        """Release what the episode holds (temporary directories)."""
        for d in self._owned_dirs:
            with contextlib.suppress(OSError):
                shutil.rmtree(d, ignore_errors=True)
        self._owned_dirs.clear()


@dataclass(slots=True)
class AgentOutput:
    """What a framework returns: the final answer (None if it gave none) and the trajectory."""

    answer: str | None
    steps: list[dict[str, JSON]] = field(default_factory=list)
    trials: int = 1
    reflections: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Score:
    """The verdict on one task: success, benchmark-specific metrics, and a short explanation."""

    success: bool
    metrics: dict[str, JSON] = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AgentDefaults:
    """Per-benchmark defaults for the agent loop (the CLI may override them)."""

    max_steps: int = 6
    thought_tokens: int = 48
    action_tokens: int = 256


class Benchmark(Protocol):
    """Loader + prompt protocol + scorer."""

    name: str
    #: The headline metric's label in reports ("pass@1", "success rate", "patch applies").
    metric: str
    defaults: AgentDefaults

    def load(self, source: str | None = None) -> list[Task]:
        """Every task, from ``source`` (a path or hub id) or the usual place; ``DataNotFoundError``."""
        ...

    async def episode(self, task: Task) -> Episode:
        """The prompt, tools and checks for one agent on ``task``."""
        ...

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Judge the agent's output (runs model-written code only in the sandbox)."""
        ...

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """Aggregate metrics over result records (``metric`` first), as fractions in [0, 1]."""
        ...


def success_rate(records: Sequence[Mapping[str, JSON]]) -> float:
    """The share of records that succeeded (0.0 for none)."""
    return sum(bool(r.get("success")) for r in records) / len(records) if records else 0.0


def strip_fences(text: str) -> str:
    """Code from a model's answer: the first fenced block if there is one, else the text as is."""
    start = text.find("```")
    if start < 0:
        return text
    body_start = text.find("\n", start)
    if body_start < 0:
        return text
    end = text.find("```", body_start)
    return text[body_start + 1 : end if end >= 0 else None]
