"""The issue's targets, checked against a result: measured value, bar, met or missed, and where from.

A target whose experiment did not run (or whose backend was skipped) is ``not run``, never met.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aios.benchmarks.efficiency.litellm_cmp import summary_at


@dataclass(slots=True, frozen=True)
class Target:
    """One row of the targets table."""

    name: str
    bar: str
    measured: str
    status: str  # "met", "missed" or "not run"
    source: str
    value: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def _row(name: str, bar: str, value: float | None, ok: bool | None, fmt: str, source: str) -> Target:
    if value is None or ok is None:
        return Target(name, bar, "-", "not run", source, None)
    return Target(name, bar, fmt.format(value), "met" if ok else "missed", source, value)


def _overhead(result: dict[str, Any]) -> list[Target]:
    ov = result.get("overhead")
    s = summary_at(ov) if ov else {}
    n = s.get("concurrency")
    src = f"overhead, stub server, N={n}" if n else "overhead"
    k = s.get("kernel_added_ms") or {}
    lit = s.get("litellm_added_ms") or {}
    out = [
        _row(
            "kernel added latency per call, median",
            "<= 0.5 ms",
            k.get("p50"),
            None if "p50" not in k else k["p50"] <= 0.5,
            "{:.3f} ms",
            src,
        ),
        _row(
            "kernel added latency per call, p99",
            "<= 3 ms",
            k.get("p99"),
            None if "p99" not in k else k["p99"] <= 3.0,
            "{:.3f} ms",
            src,
        ),
    ]
    ratio = None
    if "p50" in k and "p50" in lit and lit["p50"] > 0:
        ratio = max(k["p50"], 0.0) / lit["p50"]
    out.append(
        _row(
            "kernel added / LiteLLM added (median)",
            "<= 0.25",
            ratio,
            None if ratio is None else ratio <= 0.25,
            "{:.3f}",
            src,
        )
    )
    cpu_ratio = None
    kc, lc = s.get("kernel_added_cpu_ms"), s.get("litellm_added_cpu_ms")
    if kc is not None and lc is not None and lc > 0:
        cpu_ratio = max(kc, 0.0) / lc
    out.append(
        _row(
            "kernel added CPU / LiteLLM added CPU per call",
            "<= 0.25 (supporting)",
            cpu_ratio,
            None if cpu_ratio is None else cpu_ratio <= 0.25,
            "{:.3f}",
            src,
        )
    )
    return out


def _throughput(result: dict[str, Any]) -> list[Target]:
    modes = result.get("modes", {})
    # The bar is about a batching server: llama-server, else a given URL, else the stub.
    for name in ("llama-server", "url", "stub"):
        if name in modes:
            d = modes[name]["derived"]
            src = f"modes on {name} ({modes[name]['backend']['description']})"
            k = d.get("kernel/fifo") or next(v for key, v in d.items() if key.startswith("kernel/"))
            best_seq = max(v["throughput_vs_sequential"] for key, v in d.items() if key.startswith("kernel/"))
            return [
                _row(
                    "kernel throughput / direct (fifo)",
                    ">= 0.95",
                    k["throughput_vs_direct"],
                    k["throughput_vs_direct"] >= 0.95,
                    "{:.3f}",
                    src,
                ),
                _row(
                    "kernel throughput / sequential (fifo)",
                    ">= 2.1",
                    k["throughput_vs_sequential"],
                    k["throughput_vs_sequential"] >= 2.1,
                    "{:.2f}",
                    src,
                ),
                _row(
                    "kernel throughput / sequential (best policy)",
                    ">= 2.1",
                    best_seq,
                    best_seq >= 2.1,
                    "{:.2f}",
                    src,
                ),
            ]
    return [
        _row("kernel throughput / direct", ">= 0.95", None, None, "", "modes"),
        _row("kernel throughput / sequential", ">= 2.1", None, None, "", "modes"),
    ]


def _mixed(result: dict[str, Any]) -> list[Target]:
    mixed = result.get("mixed", {})
    for name in ("llama-server", "url", "stub"):
        if name in mixed and "fair" in mixed[name]["derived"]:
            d = mixed[name]["derived"]["fair"]
            src = f"mixed on {name} ({mixed[name]['backend']['description']})"
            return [
                _row(
                    "fair: short agents' p99 turnaround / FIFO's",
                    "<= 0.5",
                    d["short_p99_vs_fifo"],
                    d["short_p99_vs_fifo"] <= 0.5,
                    "{:.3f}",
                    src,
                ),
                _row(
                    "fair: total throughput / FIFO's",
                    "within 5 % (>= 0.95)",
                    d["throughput_vs_fifo"],
                    abs(d["throughput_vs_fifo"] - 1.0) <= 0.05 or d["throughput_vs_fifo"] > 1.0,
                    "{:.3f}",
                    src,
                ),
            ]
    return [
        _row("fair: short agents' p99 turnaround / FIFO's", "<= 0.5", None, None, "", "mixed"),
        _row("fair: total throughput / FIFO's", "within 5 %", None, None, "", "mixed"),
    ]


def _scale(result: dict[str, Any]) -> list[Target]:
    sc = result.get("scale", {}).get("stub")
    if not sc:
        return [
            _row(n, b, None, None, "", "scale")
            for n, b in (
                ("kernel CPU per syscall growth, 250 → 2000 agents", "<= 1.2x"),
                ("memory per 1000 agents", "<= 50 MB"),
                ("execution time linear in agents (R²)", ">= 0.99"),
            )
        ]
    d = sc["derived"]
    src = f"scale on the stub server, agents {d['agents']}"
    fit = d["wall_fit"]
    return [
        _row(
            f"process CPU per syscall growth, {d['agents'][0]} → {d['agents'][-1]} agents",
            "<= 1.2x",
            d["cpu_growth"],
            d["cpu_growth"] <= 1.2,
            "{:.3f}x",
            src,
        ),
        _row(
            "memory per 1000 agents (growth from the smallest to the largest point)",
            "<= 50 MB",
            d["mb_per_1000_agents_slope"],
            d["mb_per_1000_agents_slope"] <= 50,
            "{:.1f} MB",
            src,
        ),
        _row(
            "memory per 1000 agents (worst point, fixed costs included)",
            "<= 50 MB (supporting)",
            d["mb_per_1000_agents_max"],
            d["mb_per_1000_agents_max"] <= 50,
            "{:.1f} MB",
            src,
        ),
        _row(
            "execution time linear in agents (R² of a line fit)",
            ">= 0.99",
            fit["r2"],
            fit["r2"] >= 0.99,
            "{:.4f}",
            src,
        ),
        *_sim(result),
    ]


def _sim(result: dict[str, Any]) -> list[Target]:
    """The kernel alone (in-process sim backend, no HTTP): where CPU growth would come from."""
    sim = result.get("scale", {}).get("sim")
    if not sim:
        return []
    d = sim["derived"]
    src = f"scale on the in-process sim backend, agents {d['agents']}"
    return [
        _row(
            "kernel-only CPU per syscall growth (sim)",
            "<= 1.2x (supporting)",
            d["cpu_growth"],
            d["cpu_growth"] <= 1.2,
            "{:.3f}x",
            src,
        )
    ]


def evaluate(result: dict[str, Any]) -> list[Target]:
    """Every target, in the issue's order."""
    return _overhead(result) + _throughput(result) + _mixed(result) + _scale(result)


def table(targets: list[Target]) -> str:
    """A Markdown table of the targets."""
    lines = ["| target | bar | measured | status | source |", "|---|---|---|---|---|"]
    lines += [f"| {t.name} | {t.bar} | {t.measured} | {t.status} | {t.source} |" for t in targets]
    return "\n".join(lines)
