"""``aios-bench``: run a benchmark with a framework (with or without the kernel), and report runs.

aios-bench run humaneval --framework react --limit 5
aios-bench run mint --framework reflexion --no-kernel --output results/bench/mint-direct
aios-bench run gaia --framework react --data ~/gaia --vllm Qwen/Qwen2.5-7B-Instruct
aios-bench report results/bench/*
aios-bench list
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aios.errors import AIOSError

from .frameworks import FRAMEWORK_NAMES, AgentSettings, describe, get_framework
from .registry import BUILTIN, get_benchmark
from .runtime import backend_config

SCHEDULERS = ("fifo", "rr", "priority", "fair")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aios-bench", description="AIOS benchmark harness (the paper's Table 1)")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one benchmark with one framework")
    run.add_argument("benchmark", help=f"one of {', '.join(BUILTIN)} (or a plugin's)")
    run.add_argument("--framework", required=True, choices=FRAMEWORK_NAMES)
    run.add_argument("--no-kernel", action="store_true", help="the same agents, calling the backend directly")
    run.add_argument(
        "--base-url", help="an OpenAI-compatible server (e.g. vllm serve); default: embedded model"
    )
    run.add_argument("--model", help="the server's model name, or a GGUF path for the embedded backend")
    run.add_argument("--vllm", metavar="MODEL", help="start `vllm serve MODEL`, run against it, stop it")
    run.add_argument("--vllm-exe", default=os.environ.get("AIOS_VLLM_EXE", "vllm"), help=argparse.SUPPRESS)
    run.add_argument("--vllm-arg", action="append", default=[], help="extra argument for vllm serve")
    run.add_argument("--limit", type=int, help="run only the first N tasks")
    run.add_argument("--tasks", action="append", default=[], help="task ids (comma-separated, repeatable)")
    run.add_argument("--concurrency", type=int, default=1, help="agents in flight at once")
    run.add_argument("--scheduler", default="fair", choices=SCHEDULERS, help="the kernel's policy")
    run.add_argument("--output", type=Path, help="run directory (default results/bench/BENCH-FRAMEWORK-MODE)")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --output; finished tasks stay"
    )
    run.add_argument("--data", help="the benchmark's data: a local path (or hub id where supported)")
    run.add_argument("--repos", help="swebench: folder of local clones (owner__name or name)")
    run.add_argument("--samples", type=int, default=1, help="agents per task (pass@k with n samples)")
    run.add_argument("--temperature", type=float, default=0.0)
    run.add_argument("--max-steps", type=int, help="agent steps per task (default: the benchmark's)")
    run.add_argument("--thought-tokens", type=int, help="max tokens of a thought")
    run.add_argument("--action-tokens", type=int, help="max tokens of an action (tool call)")
    run.add_argument("--trials", type=int, default=2, help="reflexion: trials per task")
    run.add_argument("--task-timeout", type=float, default=1800.0, help="seconds per task's agent")
    run.set_defaults(func=_run)
    rep = sub.add_parser("report", help="render the comparison table from run directories")
    rep.add_argument("dirs", nargs="+", type=Path)
    rep.add_argument("--csv", type=Path, help="also write the CSV here")
    rep.add_argument("--markdown", type=Path, help="also write the markdown here")
    rep.set_defaults(func=_report)
    lst = sub.add_parser("list", help="list benchmarks and frameworks")
    lst.set_defaults(func=_list)
    from .efficiency.cli import add_parser as add_efficiency

    add_efficiency(sub)
    return p


def _task_ids(values: Sequence[str]) -> list[str]:
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


@contextlib.asynccontextmanager
async def _served(
    args: argparse.Namespace, output: Path
) -> AsyncIterator[tuple[str | None, str | None, dict[str, Any]]]:
    if not args.vllm:
        yield args.base_url, args.model, {}
        return
    from .vllm_server import ManagedVLLM

    output.mkdir(parents=True, exist_ok=True)
    server = ManagedVLLM(args.vllm, exe=args.vllm_exe, extra_args=args.vllm_arg, log_path=output / "vllm.log")
    async with server as base_url:
        yield base_url, args.vllm, {"vllm": {"model": args.vllm, "command": server.command()}}


async def _run_async(args: argparse.Namespace) -> int:
    from .progress import Progress
    from .runner import RunConfig, run

    # SIGTERM cancels the run like Ctrl-C: the kernel and a managed vLLM server are stopped too.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)

    kwargs: dict[str, Any] = {"data": args.data}
    if args.repos:
        kwargs["repos"] = args.repos
    bench = get_benchmark(args.benchmark, **kwargs)
    framework = get_framework(args.framework)
    d = bench.defaults
    settings = AgentSettings(
        max_steps=args.max_steps or d.max_steps,
        thought_tokens=args.thought_tokens or d.thought_tokens,
        action_tokens=args.action_tokens or d.action_tokens,
        temperature=args.temperature,
        max_trials=args.trials,
    )
    mode = "direct" if args.no_kernel else "kernel"
    output = args.output or Path("results") / "bench" / f"{args.benchmark}-{args.framework}-{mode}"
    async with _served(args, output) as (base_url, model, notes):
        extra = {"continuation": "vllm", "pass_priority": True} if args.vllm else {}
        cfg = RunConfig(
            benchmark=bench,
            framework=framework,
            output=output,
            backend=backend_config(base_url, model, **extra),
            kernel=not args.no_kernel,
            limit=args.limit,
            tasks=_task_ids(args.tasks),
            concurrency=args.concurrency,
            scheduler=args.scheduler,
            resume=args.resume,
            settings=settings,
            task_timeout=args.task_timeout,
            samples=args.samples,
            data=args.data,
            notes={"command": shlex.join(["aios-bench", *sys.argv[1:]]), **notes},
        )
        meta = await run(cfg, progress=Progress(0, label=f"{bench.name}/{framework.name}/{mode}"))
    summary = ", ".join(f"{k} {100 * v:.1f}%" for k, v in meta.get("summary", {}).items())
    print(f"{bench.name} / {framework.name} / {mode}: {summary}  ({meta.get('wall_s', 0):.0f} s) -> {output}")
    if meta.get("grading"):
        print(f"grading: {meta['grading']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run_async(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\naios-bench: interrupted; finished tasks are saved: rerun with --resume", file=sys.stderr)
        return 130


def _report(args: argparse.Namespace) -> int:
    from .report import build, csv_text, load_runs, markdown

    rows = build(load_runs(args.dirs))
    text = markdown(rows)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.csv:
        args.csv.write_text(csv_text(rows))
    return 0


def _list(args: argparse.Namespace) -> int:
    from .registry import factories

    print("benchmarks: " + ", ".join(sorted(factories())))
    for name, text in describe().items():
        print(f"framework {name}: {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``aios-bench``."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except AIOSError as exc:
        print(f"aios-bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
