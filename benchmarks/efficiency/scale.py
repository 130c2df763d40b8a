"""Kernel scalability: 250 → 2000 agents, 10 syscalls each, on the loopback **stub** server.

Each point runs in a fresh child process (``python -m aios.benchmarks.efficiency.scale --agents
N ...``), so one point's heap cannot hide the next one's memory growth. A point reports:

- wall time (the paper's "execution time", which should grow linearly with the agents);
- process CPU time per syscall (the kernel, its ``openai`` core and the agents all live in that
  process; the stub server is elsewhere) and how many GC collections ran;
- memory: peak RSS during the run minus RSS before the agents were made, sampled every 10 ms.

The ``sim`` variant (``--backend sim``: the zero-latency in-process backend, no HTTP) runs the
same points to attribute the CPU growth to the kernel itself rather than to the HTTP stack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

from aios.benchmarks.efficiency.modes import BackendSpec, run_workload
from aios.benchmarks.efficiency.stats import summarize
from aios.benchmarks.efficiency.stub_server import StubLatency, StubServer
from aios.benchmarks.efficiency.workload import uniform
from aios.errors import BackendError, ConfigError


def rss_mb() -> float:
    """This process's resident set size in MB (from /proc; 0.0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def _point(spec: BackendSpec, agents: int, calls: int, tokens: int, gc_freeze: bool) -> dict[str, Any]:
    workload = uniform(agents, llm_calls=calls, prompt_tokens=16, output_tokens=tokens, name="scale")
    # A throwaway run first: the SDK's lazy imports and first-use caches are not per-agent memory.
    # It uses ``capacity`` agents so that the connection pool is already full-size too.
    warm = uniform(spec.capacity, llm_calls=2, prompt_tokens=16, output_tokens=tokens, name="warmup")
    await run_workload(warm, spec.kernel_driver("fifo"), concurrent=True, salt="warmup", run_timeout=300)
    driver = spec.kernel_driver("fifo")
    if gc_freeze:
        gc.collect()
        gc.freeze()  # what is alive now (modules, the kernel) is never scanned again
    gc.collect()
    base = rss_mb()
    peak = base
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mb())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.01)

    sampler = asyncio.get_running_loop().create_task(sample())
    gc0 = [s["collections"] for s in gc.get_stats()]
    try:
        run = await run_workload(workload, driver, concurrent=True, salt=f"scale-{agents}", run_timeout=1800)
    finally:
        stop.set()
        await sampler
    peak = max(peak, rss_mb())
    gcs = [s["collections"] - c for s, c in zip(gc.get_stats(), gc0, strict=True)]
    s = summarize(run)
    return {
        "agents": agents,
        "calls_per_agent": calls,
        "syscalls": s["syscalls"],
        "errors": s["errors"],
        "kernel_finished": driver.kernel.metrics.finished,
        "wall_s": s["wall_s"],
        "cpu_s": s["cpu_s"],
        "cpu_us_per_syscall": s["cpu_ms_per_syscall"] * 1e3,
        "syscalls_per_s": s["throughput"]["syscalls_per_s"],
        "rss_base_mb": base,
        "rss_peak_mb": peak,
        "rss_growth_mb": peak - base,
        "gc_collections": gcs,
        "gc_freeze": gc_freeze,
        "request_turnaround_s": s["request"]["turnaround_s"],
    }


def run_point(
    agents: int,
    *,
    calls: int,
    backend: str,
    base_url: str | None,
    capacity: int,
    tokens: int,
    gc_freeze: bool = False,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """One point in a fresh child process; its JSON line back."""
    cmd = [
        sys.executable,
        "-m",
        "aios.benchmarks.efficiency.scale",
        "--agents",
        str(agents),
        "--calls",
        str(calls),
        "--backend",
        backend,
        "--capacity",
        str(capacity),
        "--tokens",
        str(tokens),
    ]
    if base_url:
        cmd += ["--base-url", base_url]
    if gc_freeze:
        cmd.append("--gc-freeze")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"scale point {agents} ran past {timeout:.0f} s", backend=backend) from None
    if proc.returncode != 0:
        raise BackendError(
            f"scale point {agents} failed ({proc.returncode}): {proc.stderr[-2000:]}", backend=backend
        )
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def fit_linear(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares ``y = a + b x``: intercept, slope, R² and the largest relative residual."""
    n = len(xs)
    if n < 2:
        return {"intercept": 0.0, "slope": 0.0, "r2": 0.0, "max_rel_residual": 0.0}
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    ss_tot = sum((y - my) ** 2 for y in ys)
    rel = max(abs(y - (a + b * x)) / y for x, y in zip(xs, ys, strict=True) if y > 0)
    return {"intercept": a, "slope": b, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0, "max_rel_residual": rel}


def derive(points: list[dict[str, Any]]) -> dict[str, Any]:
    """CPU growth, memory per 1000 agents and the linear fit of wall time over the points."""
    if not points:
        return {}
    pts = sorted(points, key=lambda p: p["agents"])
    lo, hi = pts[0], pts[-1]
    span = hi["agents"] - lo["agents"]
    slope_mem = (hi["rss_growth_mb"] - lo["rss_growth_mb"]) / span * 1000 if span else 0.0
    return {
        "agents": [p["agents"] for p in pts],
        "cpu_growth": hi["cpu_us_per_syscall"] / lo["cpu_us_per_syscall"]
        if lo["cpu_us_per_syscall"]
        else 0.0,
        "mb_per_1000_agents_max": max(p["rss_growth_mb"] / p["agents"] * 1000 for p in pts),
        "mb_per_1000_agents_slope": slope_mem,
        "wall_fit": fit_linear([float(p["agents"]) for p in pts], [p["wall_s"] for p in pts]),
        "wall_per_agent_ms": [p["wall_s"] / p["agents"] * 1e3 for p in pts],
    }


def scale_experiment(
    agents: list[int],
    *,
    calls: int = 10,
    capacity: int = 64,
    tokens: int = 8,
    stub_fixed_ms: float = 20.0,
    stub_per_token_ms: float = 0.0,
    sim: bool = True,
    gc_freeze: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """Every point on the stub server (and, if ``sim``, on the in-process sim backend)."""
    if not agents:
        raise ConfigError("at least one agent count is needed", field="scale")
    lat = StubLatency(stub_fixed_ms, stub_per_token_ms)
    out: dict[str, Any] = {
        "backend": lat.label,
        "capacity": capacity,
        "calls_per_agent": calls,
        "tokens_per_call": tokens,
        "policy": "fifo",
    }
    variants: list[tuple[str, str, bool]] = [("stub", "stub", False)]
    if gc_freeze:
        variants.append(("stub+gc_freeze", "stub", True))
    if sim:
        variants.append(("sim", "sim", False))
    with StubServer(lat) as stub:
        for name, backend, freeze in variants:
            points = []
            for n in agents:
                t = time.perf_counter()
                url = stub.base_url if backend == "stub" else None
                p = run_point(
                    n,
                    calls=calls,
                    backend=backend,
                    base_url=url,
                    capacity=capacity,
                    tokens=tokens,
                    gc_freeze=freeze,
                )
                points.append(p)
                log(
                    f"  scale {name:14s} agents={n:5d}: wall {p['wall_s']:6.2f} s, "
                    f"CPU {p['cpu_us_per_syscall']:7.1f} us/syscall, RSS +{p['rss_growth_mb']:6.1f} MB, "
                    f"errors {p['errors']} ({time.perf_counter() - t:.0f} s)"
                )
            out[name] = {"points": points, "derived": derive(points)}
    if "sim" in out:
        out["sim"]["backend"] = "sim (in-process, zero latency: the kernel alone, no HTTP)"
    return out


def main(argv: list[str] | None = None) -> int:
    """One scalability point (run by ``run_point`` in a child process); prints one JSON line."""
    p = argparse.ArgumentParser(description="One kernel scalability point.")
    p.add_argument("--agents", type=int, required=True)
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--backend", choices=("stub", "sim"), default="stub")
    p.add_argument("--base-url", default=None)
    p.add_argument("--capacity", type=int, default=64)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--gc-freeze", action="store_true")
    args = p.parse_args(argv)
    if args.backend == "stub":
        if not args.base_url:
            raise ConfigError("--base-url is required with --backend stub", field="base_url")
        spec = BackendSpec(
            "stub", "openai", "stub", capacity=args.capacity, model="stub", base_url=args.base_url
        )
    else:
        spec = BackendSpec("sim", "sim", "sim", capacity=args.capacity)
    row = asyncio.run(_point(spec, args.agents, args.calls, args.tokens, args.gc_freeze))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
