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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run each framework's agents with and without the kernel on ``base_url``; rows per run."""
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for name in frameworks:
        cmd = framework_command(name)
        if cmd is None:
            skipped[name] = f"no environment .venvs/{name} (build it with scripts/make-env.sh {name})"
            log(f"  frameworks: skipping {name}: {skipped[name]}")
            continue
        for kernel in (True, False):
            mode = "kernel" if kernel else "direct"
            run_dir = out / "frameworks" / f"{name}-{mode}"
            args = [
                *cmd, "run", bench, "--framework", name, "--limit", str(agents),
                "--concurrency", str(agents), "--base-url", base_url, "--model", model,
                "--max-steps", str(max_steps), "--action-tokens", str(action_tokens),
                "--output", str(run_dir), "--task-timeout", str(timeout_s),
            ]  # fmt: skip
            if kernel:
                args += ["--scheduler", scheduler]
            else:
                args.append("--no-kernel")
            started = time.perf_counter()
            try:
                proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s + 120, env=env)
            except subprocess.TimeoutExpired:
                skipped[f"{name}/{mode}"] = f"timed out after {timeout_s + 120:.0f} s"
                log(f"  frameworks: {name} {mode} timed out")
                continue
            if proc.returncode != 0 or not (run_dir / "run.json").exists():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
                skipped[f"{name}/{mode}"] = f"exit {proc.returncode}: {' | '.join(tail)}"
                log(f"  frameworks: {name} {mode} failed: {skipped[f'{name}/{mode}']}")
                continue
            row = {"framework": name, "mode": mode, **_read_run(run_dir)}
            row["process_s"] = time.perf_counter() - started
            rows.append(row)
            log(
                f"  frameworks: {name:16s} {mode:6s} {row['tasks']} tasks in {row['wall_s']:.1f} s: "
                f"{row['llm_calls_per_s']:.2f} LLM calls/s, {row['tokens_per_s']:.1f} tokens/s, "
                f"task p50 {row['task_turnaround_s']['p50']:.1f} s"
            )
    return {
        "bench": bench,
        "agents": agents,
        "max_steps": max_steps,
        "action_tokens": action_tokens,
        "base_url": base_url,
        "rows": rows,
        "skipped": skipped,
        "ratios": _ratios(rows),
    }


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
