"""Framework agents through their adapters: throughput and latency per framework and mode.

The synthetic agents of ``modes`` say what the kernel costs and buys on a given call pattern;
this experiment runs the real agents instead: for each framework, N agents of ``aios-bench run
BENCH --framework F --concurrency N --limit N`` on one shared OpenAI-compatible server (the
harness's ``llama-server``, or ``--base-url``), with the kernel and without it. Each framework
runs in its own environment (``.venvs/<name>`` as ``scripts/make-env.sh`` builds it; ``react``
and ``reflexion`` in this interpreter's), as a subprocess of this one, so a framework's imports
never mix with another's. A framework without an environment is skipped, saying why.

What is read back from each run, from ``results.jsonl``: every task's turnaround, LLM calls and
tokens; throughput is tasks/s, LLM calls/s and completion tokens/s over the tasks' span (first
start to last finish, so a framework's import time does not count). The agents' scores are
recorded too, but on a 135M model they say little.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.benchmarks.efficiency.stats import dist
from aios.benchmarks.frameworks import FRAMEWORK_NAMES

#: Frameworks that run in this interpreter (native agents on the SDK).
NATIVE = ("react", "reflexion")


def project_root() -> Path:
    """The checkout this package is installed from (where ``.venvs/`` lives)."""
    return Path(__file__).resolve().parents[2]


def framework_command(name: str, root: Path | None = None) -> list[str] | None:
    """How to start ``aios-bench`` for framework ``name``; None when its environment is missing."""
    if name in NATIVE:
        return [sys.executable, "-m", "aios.benchmarks.cli"]
    python = (root or project_root()) / ".venvs" / name / "bin" / "python"
    return [str(python), "-m", "aios.benchmarks.cli"] if python.exists() else None


def _read_run(out: Path) -> dict[str, Any]:
    meta = json.loads((out / "run.json").read_text())
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    # The tasks' own span, first start to last finish: the run's wall time also holds the
    # framework's import and the kernel's start (MetaGPT's import alone takes seconds).
    timed = [r for r in records if r.get("finished_at")]
    starts = [float(r["finished_at"]) - float(r.get("wall_s") or 0.0) for r in timed]
    ends = [float(r["finished_at"]) for r in timed]
    wall = (max(ends) - min(starts)) if ends else 0.0
    wall = wall or 1e-9
    calls = sum(int(r.get("llm_calls") or 0) for r in records)
    tokens = sum(int(r.get("completion_tokens") or 0) for r in records)
    return {
        "wall_s": wall,
        "run_wall_s": float(meta.get("wall_s") or 0.0),
        "tasks": len(records),
        "done": sum(r.get("status") == "done" for r in records),
        "errors": [r.get("error") for r in records if r.get("status") != "done"][:3],
        "success": sum(bool(r.get("success")) for r in records),
        "llm_calls": calls,
        "completion_tokens": tokens,
        "tasks_per_s": len(records) / wall,
        "llm_calls_per_s": calls / wall,
        "tokens_per_s": tokens / wall,
        "task_turnaround_s": dist([float(r.get("wall_s") or 0.0) for r in records]),
        "syscalls_by_kind": (meta.get("kernel_stats") or {}).get("by_kind"),
    }


@dataclass(frozen=True, slots=True)
class _Plan:
    """What every run of the experiment shares."""

    base_url: str
    model: str
    out: Path
    bench: str
    agents: int
    max_steps: int
    action_tokens: int
    scheduler: str
    timeout_s: float

    def args(self, name: str, kernel: bool, run_dir: Path) -> list[str]:
        """The ``aios-bench run`` arguments of one run."""
        return [
            "run", self.bench, "--framework", name, "--limit", str(self.agents),
            "--concurrency", str(self.agents), "--base-url", self.base_url, "--model", self.model,
            "--max-steps", str(self.max_steps), "--action-tokens", str(self.action_tokens),
            "--output", str(run_dir), "--task-timeout", str(self.timeout_s),
            *(["--scheduler", self.scheduler] if kernel else ["--no-kernel"]),
        ]  # fmt: skip


def frameworks_experiment(
    base_url: str,
    model: str,
    *,
    out: Path,
    frameworks: Sequence[str] = FRAMEWORK_NAMES,
    bench: str = "mint",
    agents: int = 4,
    max_steps: int = 2,
    action_tokens: int = 64,
    scheduler: str = "fair",
    timeout_s: float = 900.0,
    repeats: int = 2,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run each framework's agents with and without the kernel on ``base_url``; the best of ``repeats``.

    The modes alternate (kernel then direct, then direct then kernel, ...): a server's prompt
    cache makes whichever mode runs second faster (MINT's shared prompt is then mostly cached),
    so a fixed order would credit that mode. Each mode's fastest run is kept in ``rows``; every
    run is in ``all_rows``.
    """
    plan = _Plan(base_url, model, out, bench, agents, max_steps, action_tokens, scheduler, timeout_s)
    all_rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in frameworks:
        cmd = framework_command(name)
        if cmd is None:
            skipped[name] = f"no environment .venvs/{name} (build it with scripts/make-env.sh {name})"
            log(f"  frameworks: skipping {name}: {skipped[name]}")
            continue
        for rep in range(max(1, repeats)):
            for kernel in (True, False) if rep % 2 == 0 else (False, True):
                row = _run_one(plan, cmd, name, kernel, rep, skipped, log)
                if row is not None:
                    all_rows.append(row)
    keys = dict.fromkeys((r["framework"], r["mode"]) for r in all_rows)
    rows = [
        min((r for r in all_rows if (r["framework"], r["mode"]) == k), key=lambda r: r["wall_s"])
        for k in keys
    ]
    return {
        "bench": bench,
        "agents": agents,
        "max_steps": max_steps,
        "action_tokens": action_tokens,
        "base_url": base_url,
        "repeats": max(1, repeats),
        "rows": rows,
        "all_rows": all_rows,
        "skipped": skipped,
        "ratios": _ratios(rows),
    }


def _run_one(
    plan: _Plan,
    cmd: list[str],
    name: str,
    kernel: bool,
    rep: int,
    skipped: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """One ``aios-bench run`` of ``name`` in one mode: its row, or None (the reason in ``skipped``)."""
    mode = "kernel" if kernel else "direct"
    run_dir = plan.out / "frameworks" / f"{name}-{mode}-{rep + 1}"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [*cmd, *plan.args(name, kernel, run_dir)],
            capture_output=True,
            text=True,
            timeout=plan.timeout_s + 120,
            env=env,
        )
    except subprocess.TimeoutExpired:
        skipped[f"{name}/{mode}"] = f"timed out after {plan.timeout_s + 120:.0f} s"
        log(f"  frameworks: {name} {mode} timed out")
        return None
    if proc.returncode != 0 or not (run_dir / "run.json").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        skipped[f"{name}/{mode}"] = f"exit {proc.returncode}: {' | '.join(tail)}"
        log(f"  frameworks: {name} {mode} failed: {skipped[f'{name}/{mode}']}")
        return None
    row = {"framework": name, "mode": mode, "repeat": rep, **_read_run(run_dir)}
    row["process_s"] = time.perf_counter() - started
    log(
        f"  frameworks: {name:16s} {mode:6s} #{rep + 1} {row['done']}/{row['tasks']} tasks done "
        f"in {row['wall_s']:.1f} s: {row['llm_calls_per_s']:.2f} LLM calls/s, "
        f"{row['tokens_per_s']:.1f} tokens/s, task p50 {row['task_turnaround_s']['p50']:.1f} s"
        + (f"; errors: {row['errors'][0]}" if row["errors"] else "")
    )
    return row


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per framework: kernel ÷ direct for wall time and LLM calls/s (same tasks, same server)."""
    by = {(r["framework"], r["mode"]): r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for (name, mode), k in by.items():
        d = by.get((name, "direct"))
        if mode != "kernel" or d is None:
            continue
        out[name] = {
            "wall_kernel_over_direct": k["wall_s"] / d["wall_s"],
            "calls_per_s_kernel_over_direct": k["llm_calls_per_s"] / (d["llm_calls_per_s"] or 1e-9),
        }
    return out
