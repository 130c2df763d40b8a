"""``aios-bench efficiency`` (also ``python -m aios.benchmarks.efficiency``): run, write JSON and plots.

aios-bench efficiency --quick                      # a few minutes: every experiment, small counts
aios-bench efficiency --build-llama-server         # full run; builds llama-server once if missing
aios-bench efficiency --experiments modes --backends url --base-url http://gpu:8000/v1 --model M
aios-bench efficiency --experiments scale --scale 250 500 1000 2000
aios-bench efficiency --experiments frameworks --framework-agents 4   # real framework agents

Writes ``<out>/efficiency.json`` (every number, the options, the targets table) and
``<out>/plots/*.png``, and prints the targets table. Runs on the loopback stub server are
labelled as such in every output: the stub has no model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from aios.benchmarks.efficiency.experiments import (
    BACKENDS,
    EXPERIMENTS,
    OPTIONAL_EXPERIMENTS,
    Options,
    run_all,
)
from aios.benchmarks.efficiency.modes import POLICIES
from aios.benchmarks.efficiency.targets import evaluate, table
from aios.benchmarks.frameworks import FRAMEWORK_NAMES
from aios.errors import AIOSError


def _csv(kind: type, choices: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        items = tuple(kind(t.strip()) for t in text.split(",") if t.strip())
        if choices is not None:
            bad = [i for i in items if i not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the efficiency benchmark's options to ``p``."""
    p.add_argument("--quick", action="store_true", help="small counts: a few minutes on a 2-core machine")
    p.add_argument("--out", type=Path, default=Path("results/efficiency"), help="output folder")
    p.add_argument(
        "--experiments",
        type=_csv(str, EXPERIMENTS + OPTIONAL_EXPERIMENTS),
        help=f"comma list of {','.join(EXPERIMENTS)} (the default) and {','.join(OPTIONAL_EXPERIMENTS)}",
    )
    p.add_argument(
        "--frameworks", type=_csv(str, FRAMEWORK_NAMES), help="frameworks experiment: which frameworks"
    )
    p.add_argument("--framework-agents", type=int, help="frameworks experiment: agents (= tasks) per run")
    p.add_argument("--framework-bench", help="frameworks experiment: the benchmark the agents run (mint)")
    p.add_argument("--backends", type=_csv(str, BACKENDS), help=f"comma list of {','.join(BACKENDS)}")
    p.add_argument("--policies", type=_csv(str, POLICIES), help=f"kernel policies ({','.join(POLICIES)})")
    p.add_argument("--agents", type=int, help="agents in the modes experiment")
    p.add_argument("--llm-calls", type=int, help="LLM calls per agent")
    p.add_argument("--prompt-tokens", type=int, help="prompt length per call (about)")
    p.add_argument("--output-tokens", type=int, help="max tokens generated per call")
    p.add_argument("--tool-calls", type=int, help="tool calls per agent (each after an LLM call)")
    p.add_argument("--tool-seconds", type=float, help="seconds one tool call takes")
    p.add_argument("--slice-tokens", type=int, help="time slice of rr/fair/priority, in tokens")
    p.add_argument("--embedded-agents", type=int, help="agents on the embedded model")
    p.add_argument("--stub-fixed-ms", type=float, help="stub latency model: ms before the first token")
    p.add_argument("--stub-per-token-ms", type=float, help="stub latency model: ms per token")
    p.add_argument("--parallel", type=int, help="llama-server --parallel slots (= kernel core capacity)")
    p.add_argument("--server-threads", type=int, help="llama-server --threads")
    p.add_argument("--build-llama-server", action="store_true", help="build llama-server if not cached")
    p.add_argument("--base-url", help="an OpenAI-compatible server for backend 'url' (e.g. vLLM)")
    p.add_argument("--model", help="its model name")
    p.add_argument("--capacity", type=int, help="its batch slots (kernel core capacity)")
    p.add_argument("--mixed-long", type=int, help="long agents in the mixed workload")
    p.add_argument("--mixed-short", type=int, help="short agents in the mixed workload")
    p.add_argument("--mixed-long-tokens", type=int, help="tokens of a long generation")
    p.add_argument("--mixed-capacity", type=int, help="core capacity in the mixed workload")
    p.add_argument(
        "--overhead-concurrency", type=int, nargs="+", help="concurrency levels (default 1 100 500)"
    )
    p.add_argument("--overhead-calls", type=int, help="calls per agent in the overhead run (at least)")
    p.add_argument("--overhead-min-samples", type=int, help="calls per level in the overhead run (at least)")
    p.add_argument("--overhead-rate", type=float, help="offered load of the overhead run, requests/s")
    p.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out of the overhead run")
    p.add_argument(
        "--scale", type=int, nargs="+", dest="scale_agents", help="agent counts (default 250..2000)"
    )
    p.add_argument("--scale-calls", type=int, help="syscalls per agent in the scale run")
    p.add_argument("--scale-capacity", type=int, help="the stub core's capacity in the scale run")
    p.add_argument("--no-scale-sim", action="store_true", help="skip the in-process sim attribution run")
    p.add_argument(
        "--scale-gc-freeze", action="store_true", help="also run the scale points with gc.freeze()"
    )
    p.add_argument("--no-plots", action="store_true", help="write the JSON only")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``efficiency`` on an ``aios-bench`` subparsers object (handler in ``func``)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "efficiency",
        help="throughput, latency, overhead and scalability: sequential vs direct vs kernel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run_args)
    return p


_SIMPLE = (
    "agents",
    "llm_calls",
    "prompt_tokens",
    "output_tokens",
    "tool_calls",
    "tool_seconds",
    "slice_tokens",
    "embedded_agents",
    "stub_fixed_ms",
    "stub_per_token_ms",
    "parallel",
    "server_threads",
    "base_url",
    "model",
    "capacity",
    "mixed_long",
    "mixed_short",
    "mixed_long_tokens",
    "mixed_capacity",
    "overhead_calls",
    "overhead_min_samples",
    "overhead_rate",
    "scale_calls",
    "scale_capacity",
    "experiments",
    "backends",
    "policies",
    "frameworks",
    "framework_agents",
    "framework_bench",
)


def options_from_args(args: argparse.Namespace) -> Options:
    """The run's ``Options``: the preset (quick or full), then every flag that was given."""
    over: dict[str, Any] = {k: getattr(args, k) for k in _SIMPLE if getattr(args, k, None) is not None}
    if args.overhead_concurrency:
        over["overhead_concurrency"] = tuple(args.overhead_concurrency)
    if args.scale_agents:
        over["scale_agents"] = tuple(args.scale_agents)
    over["out"] = args.out
    over["build_llama_server"] = args.build_llama_server
    over["litellm"] = not args.no_litellm
    over["scale_sim"] = not args.no_scale_sim
    over["scale_gc_freeze"] = args.scale_gc_freeze
    over["plots"] = not args.no_plots
    if args.base_url and "backends" not in over:
        over["backends"] = ("stub", "url")
    preset = Options.quick_preset if args.quick else Options.full_preset
    return preset(**over).validate()


def run_args(args: argparse.Namespace) -> int:
    """Run with parsed arguments; 0 on success, 2 on a configuration or backend error."""
    try:
        opts = options_from_args(args)
        result = run_all(opts)
    except AIOSError as exc:
        print(f"aios-bench efficiency: {exc}", file=sys.stderr)
        return 2
    targets = evaluate(result)
    result["targets"] = [t.as_dict() for t in targets]
    out = opts.out
    path = out / "efficiency.json"
    plots: list[str] = []
    if opts.plots:
        from aios.benchmarks.efficiency.plots import matplotlib_available, render

        if matplotlib_available():
            plots = [str(p) for p in render(result, out / "plots")]
        else:
            print("matplotlib is not installed: no plots (pip install 'aios-agent-kernel[efficiency]')")
    result["plots"] = plots
    path.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(table(targets))
    print(f"\nwrote {path} and {len(plots)} plots in {out / 'plots'} ({result['meta']['seconds']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run."""
    p = argparse.ArgumentParser(
        prog="python -m aios.benchmarks.efficiency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return run_args(p.parse_args(argv))
