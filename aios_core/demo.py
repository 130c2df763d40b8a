"""``aios demo``: N concurrent agents share one model under a chosen policy; prints who got what.

Each agent is a two-step conversation (a question, then a follow-up on its own answer), with
different answer lengths so the policies differ visibly: under ``fifo`` the short agents queue
behind the long ones, under ``fair``/``rr`` the long generations are cut and resumed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aios.config import KernelConfig, load_config
from aios.kernel import Kernel
from aios.sdk import agent, llm_chat

QUESTIONS = [
    "Name three uses of a hash table.",
    "What is the capital of France? Answer briefly.",
    "Write a haiku about the sea.",
    "Explain recursion to a child.",
    "List the planets of the solar system.",
    "What does a CPU scheduler do?",
    "Give two tips for writing clear code.",
    "Why is the sky blue?",
]


@dataclass(slots=True)
class AgentRow:
    """One agent's numbers in the demo table."""

    name: str
    calls: int
    waiting: float
    turnaround: float
    tokens: int
    preemptions: int
    answer: str


async def _one_agent(i: int, max_tokens: int) -> str:
    with agent(f"agent-{i}"):
        q = QUESTIONS[i % len(QUESTIONS)]
        messages: list[dict[str, Any]] = [{"role": "user", "content": q}]
        first = await llm_chat(messages, max_tokens=max_tokens)
        messages += [first.to_message(), {"role": "user", "content": "Now say it in one sentence."}]
        second = await llm_chat(messages, max_tokens=max(8, max_tokens // 3))
        return (
            first.text.strip().replace("\n", " ")[:60] + " | " + second.text.strip().replace("\n", " ")[:30]
        )


async def run_demo(
    agents: int = 6, scheduler: str = "fair", max_tokens: int = 48, config: KernelConfig | None = None
) -> tuple[list[AgentRow], dict[str, Any]]:
    """Run the demo and return per-agent rows and totals."""
    cfg = config or load_config(overrides={"scheduler": scheduler})
    t0 = time.perf_counter()
    async with Kernel(cfg) as kernel:
        # Alternate long and short agents so scheduling matters.
        lengths = [max_tokens * 2 if i % 3 == 0 else max_tokens // 2 for i in range(agents)]
        answers = await asyncio.gather(*(_one_agent(i, n) for i, n in enumerate(lengths)))
        stats = kernel.stats()
    wall = time.perf_counter() - t0
    rows = []
    for i, ans in enumerate(answers):
        m = stats["agents"][f"agent-{i}"]
        rows.append(
            AgentRow(
                name=f"agent-{i}",
                calls=m["syscalls"],
                waiting=m["waiting_total"],
                turnaround=m["turnaround_total"],
                tokens=m["completion_tokens"],
                preemptions=m["preemptions"],
                answer=ans,
            )
        )
    total_tokens = sum(r.tokens for r in rows)
    totals = {
        "scheduler": stats["scheduler"],
        "backends": [b.name + ":" + b.kind for b in cfg.backends],
        "wall_s": wall,
        "syscalls": stats["finished"],
        "completion_tokens": total_tokens,
        "tokens_per_s": total_tokens / wall if wall else 0.0,
        "preemptions": stats["preemptions"],
        "errors": stats["errors"],
    }
    return rows, totals


def format_table(rows: list[AgentRow], totals: dict[str, Any]) -> str:
    """The demo's plain-text table."""
    head = f"{'agent':<10} {'calls':>5} {'wait s':>8} {'turnaround s':>13} {'tokens':>7} {'cuts':>5}  answer"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:<10} {r.calls:>5} {r.waiting:>8.2f} {r.turnaround:>13.2f} {r.tokens:>7} "
            f"{r.preemptions:>5}  {r.answer}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"scheduler={totals['scheduler']} backends={','.join(totals['backends'])} "
        f"syscalls={totals['syscalls']} tokens={totals['completion_tokens']} "
        f"wall={totals['wall_s']:.1f}s throughput={totals['tokens_per_s']:.1f} tok/s "
        f"preemptions={totals['preemptions']} errors={totals['errors'] or 0}"
    )
    return "\n".join(lines)
