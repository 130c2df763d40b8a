"""Plots of an efficiency result (matplotlib, Agg backend: no display needed).

One PNG per figure: throughput and latency per mode for each backend, the mixed workload per
policy, the side-by-side overhead per concurrency, and the scalability curve. A stub-server run
says so in the figure's title.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    # Imported by name: matplotlib is an optional dependency (and has no stubs in strict mypy).
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")  # headless: never opens a window
    return importlib.import_module("matplotlib.pyplot")


def matplotlib_available() -> bool:
    """Whether matplotlib is installed (without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _short(desc: str) -> str:
    return desc if len(desc) <= 90 else desc[:87] + "..."


def _modes(plt: Any, name: str, exp: dict[str, Any], out: Path) -> list[Path]:
    runs = exp["runs"]
    labels = [r["name"] for r in runs]
    x = range(len(runs))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    axes[0].bar(x, [r["throughput"]["completion_tokens_per_s"] for r in runs], color="tab:blue")
    axes[0].set_ylabel("completion tokens/s")
    ax2 = axes[0].twinx()
    ax2.plot(list(x), [r["throughput"]["syscalls_per_s"] for r in runs], "o-", color="tab:orange")
    ax2.set_ylabel("syscalls/s", color="tab:orange")
    axes[0].set_title("throughput")
    width = 0.27
    for i, q in enumerate(("p50", "p90", "p99")):
        axes[1].bar(
            [v + (i - 1) * width for v in x],
            [r["agent"]["turnaround_s"][q] for r in runs],
            width,
            label=f"agent turnaround {q}",
        )
    axes[1].plot(
        list(x), [r["request"]["turnaround_s"]["p50"] for r in runs], "k^", label="request turnaround p50"
    )
    axes[1].set_ylabel("seconds")
    axes[1].set_title("latency")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    fig.suptitle(f"{name}: {_short(exp['backend']['description'])}", fontsize=9)
    fig.tight_layout()
    path = out / f"modes_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _mixed(plt: Any, name: str, exp: dict[str, Any], out: Path) -> list[Path]:
    runs = exp["runs"]
    labels = [r["policy"] for r in runs]
    x = range(len(runs))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = sorted({g for r in runs for g in r["groups"]})
    width = 0.8 / max(1, len(groups))
    for i, g in enumerate(groups):
        ax.bar(
            [v + i * width for v in x],
            [r["groups"].get(g, {}).get("agent_turnaround_s", {}).get("p99", 0.0) for r in runs],
            width,
            label=f"{g} agents: turnaround p99",
        )
    ax.set_xticks([v + width * (len(groups) - 1) / 2 for v in x])
    ax.set_xticklabels(labels)
    ax.set_ylabel("seconds")
    ax.legend(fontsize=8)
    ax.set_title(f"mixed workload on {name}: {_short(exp['backend']['description'])}", fontsize=8)
    fig.tight_layout()
    path = out / f"mixed_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _overhead(plt: Any, ov: dict[str, Any], out: Path) -> list[Path]:
    rows = ov["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for client in ov["clients"]:
        pts = sorted(
            (r for r in rows if r["client"] == client and "added_ms" in r), key=lambda r: r["concurrency"]
        )
        if client == "direct" or not pts:
            continue
        xs = [r["concurrency"] for r in pts]
        axes[0].plot(xs, [r["added_ms"]["p50"] for r in pts], "o-", label=f"{client} p50")
        axes[0].plot(xs, [r["added_ms"]["p99"] for r in pts], "s--", label=f"{client} p99")
    for client in ov["clients"]:
        pts = sorted((r for r in rows if r["client"] == client), key=lambda r: r["concurrency"])
        axes[1].plot([r["concurrency"] for r in pts], [r["cpu_ms_per_call"] for r in pts], "o-", label=client)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("concurrent agents")
        ax.legend(fontsize=8)
    axes[0].axhline(0.0, color="grey", lw=0.5)
    axes[0].set_ylabel("added latency vs direct SDK (ms)")
    axes[1].set_ylabel("client CPU per call (ms)")
    fig.suptitle("overhead per call on the STUB loopback server (no model)", fontsize=9)
    fig.tight_layout()
    path = out / "overhead.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _scale(plt: Any, sc: dict[str, Any], out: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name in ("stub", "stub+gc_freeze", "sim"):
        if name not in sc:
            continue
        pts = sc[name]["points"]
        xs = [p["agents"] for p in pts]
        axes[0].plot(xs, [p["wall_s"] for p in pts], "o-", label=name)
        fit = sc[name]["derived"]["wall_fit"]
        axes[0].plot(xs, [fit["intercept"] + fit["slope"] * x for x in xs], ":", color="grey")
        axes[1].plot(xs, [p["cpu_us_per_syscall"] for p in pts], "o-", label=name)
        axes[2].plot(xs, [p["rss_growth_mb"] for p in pts], "o-", label=name)
    axes[0].set_ylabel("execution time (s)")
    axes[1].set_ylabel("process CPU per syscall (us)")
    axes[1].set_yscale("log")
    axes[2].set_ylabel("peak RSS growth (MB)")
    for ax in axes:
        ax.set_xlabel(f"agents (x {sc['calls_per_agent']} syscalls each)")
        ax.legend(fontsize=8)
    fig.suptitle(f"kernel scalability: {sc['backend']}; sim = in-process zero-latency backend", fontsize=9)
    fig.tight_layout()
    path = out / "scalability.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _frameworks(plt: Any, exp: dict[str, Any], out: Path) -> list[Path]:
    """Per framework, with and without the kernel: LLM calls/s and task turnaround p50/p90."""
    rows = exp["rows"]
    names = sorted({r["framework"] for r in rows}, key=[r["framework"] for r in rows].index)
    by = {(r["framework"], r["mode"]): r for r in rows}
    x = range(len(names))
    width = 0.38
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, mode in enumerate(("kernel", "direct")):
        pos = [v + (i - 0.5) * width for v in x]
        rates = [by.get((n, mode), {}).get("llm_calls_per_s", 0.0) for n in names]
        axes[0].bar(pos, rates, width, label=mode)
        axes[1].bar(
            pos,
            [by.get((n, mode), {}).get("task_turnaround_s", {}).get("p50", 0.0) for n in names],
            width,
            label=f"{mode} p50",
        )
        axes[1].plot(
            pos,
            [by.get((n, mode), {}).get("task_turnaround_s", {}).get("p90", 0.0) for n in names],
            "k_",
            markersize=14,
        )
    axes[0].set_ylabel("LLM calls/s")
    axes[0].set_title("throughput")
    axes[1].set_ylabel("task turnaround, s (bar p50, dash p90)")
    axes[1].set_title("latency")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{exp['agents']} framework agents on {exp['bench']}: {_short(exp.get('backend', ''))}", fontsize=9
    )
    fig.tight_layout()
    path = out / "frameworks.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def render(result: dict[str, Any], out: Path) -> list[Path]:
    """Write every plot the result has data for into ``out``; return the files."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    for name, exp in result.get("modes", {}).items():
        files += _modes(plt, name, exp, out)
    for name, exp in result.get("mixed", {}).items():
        files += _mixed(plt, name, exp, out)
    if result.get("overhead", {}).get("rows"):
        files += _overhead(plt, result["overhead"], out)
    if "stub" in result.get("scale", {}):
        files += _scale(plt, result["scale"], out)
    if result.get("frameworks", {}).get("rows"):
        files += _frameworks(plt, result["frameworks"], out)
    return files
