"""Side-by-side overhead: the same stub server through the ``openai`` SDK, the kernel, and LiteLLM.

At each concurrency N, N agents make streamed calls to the loopback **stub** server in three
ways: ``direct`` (``AsyncOpenAI`` with the kernel backend's client settings), ``kernel`` (a
``Kernel`` whose ``openai`` core has capacity N, so it never queues) and ``litellm``
(``litellm.Router.acompletion`` in process, optional).

How the overhead is isolated from the server and from queueing:

- the stub runs in its own process, pinned to the last core, and this process is pinned to the
  others while measuring, so their CPUs do not compete;
- the stub answers after a fixed delay ``L`` chosen so that the offered load ``N / L`` stays at
  ``rate`` requests/s, well below what the stub and the slowest client can serve; the agents'
  starts are spread evenly over ``L`` (a steady arrival, not one burst);
- so each call's latency is ``L`` + what the client stack costs, and the *added* overhead of
  the kernel (or LiteLLM) is its latency quantile minus the direct SDK's at the same quantile.
  The client process's CPU per call is reported too (on one event loop, CPU is latency once busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, cast

from aios.benchmarks.efficiency.drivers import CallRecord, Driver, KernelDriver, SDKDriver
from aios.benchmarks.efficiency.modes import BackendSpec, run_workload
from aios.benchmarks.efficiency.stats import dist, summarize
from aios.benchmarks.efficiency.stub_server import StubLatency, StubServer
from aios.benchmarks.efficiency.workload import ToolStep, uniform
from aios.errors import BackendError, ConfigError
from aios.types import LLMRequest

CLIENTS = ("direct", "kernel", "litellm")


def litellm_available() -> bool:
    """Whether the optional ``litellm`` package is installed (without importing it)."""
    return importlib.util.find_spec("litellm") is not None


def _import_litellm() -> Any:
    """litellm, imported lazily (it is optional; its import takes seconds and warns)."""
    # Without this, importing litellm fetches a cost map from the network.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation warnings of its dependencies
        return importlib.import_module("litellm")


class LiteLLMDriver:
    """``litellm.Router.acompletion`` (streamed) on an ``openai/<model>`` deployment."""

    def __init__(self, base_url: str, model: str, *, timeout: float = 600.0):
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.label = "litellm"
        self._router: Any = None
        self._filters: Any = None
        self.version = ""

    async def start(self) -> None:
        """Import litellm (offline: its cost map from the package) and build the router."""
        # litellm's pydantic models warn on first use, at run time too; kept quiet until close().
        self._filters = list(warnings.filters)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydantic\..*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        litellm = _import_litellm()
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.version = importlib.metadata.version("litellm")
        self._router = litellm.Router(
            model_list=[
                {
                    "model_name": self.model,
                    "litellm_params": {
                        "model": f"openai/{self.model}",
                        "api_base": self.base_url,
                        "api_key": "EMPTY",
                        "timeout": self.timeout,
                    },
                }
            ],
            num_retries=0,
        )

    async def close(self) -> None:
        """Close litellm's cached async HTTP clients."""
        self._router = None
        closer = getattr(_import_litellm(), "close_litellm_async_clients", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
        if self._filters is not None:
            cast(list[Any], warnings.filters)[:] = self._filters
            self._filters = None

    async def llm(self, agent: str, request: LLMRequest, rec: CallRecord, now: Callable[[], float]) -> None:
        """One streamed completion through the router."""
        if self._router is None:
            raise BackendError("the LiteLLM driver is not started", backend="litellm")
        stream = await self._router.acompletion(
            model=self.model,
            messages=request.messages,
            stream=True,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            stream_options={"include_usage": True},
        )
        chunks = 0
        usage = None
        async for chunk in stream:
            choices = getattr(chunk, "choices", None) or []
            if choices and getattr(choices[0].delta, "content", None):
                if rec.first_token is None:
                    rec.first_token = now()
                chunks += 1
            u = getattr(chunk, "usage", None)
            if u is not None and getattr(u, "completion_tokens", None):
                usage = u
        rec.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        rec.completion_tokens = int(getattr(usage, "completion_tokens", 0) or chunks)

    async def tool(self, agent: str, step: ToolStep) -> None:
        """A simulated tool: wait."""
        await asyncio.sleep(step.seconds)


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Pin this process to ``cpus`` for the block (no-op where affinity is unavailable)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_split() -> tuple[set[int] | None, int | None]:
    """(client cores, stub core): the stub gets the last core, the client the rest."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), cpus[-1]


async def _one(
    client: str, base_url: str, concurrency: int, calls: int, tokens: int, latency_s: float, warmup: int
) -> dict[str, Any]:
    driver: Driver
    if client == "direct":
        driver = SDKDriver(base_url, "stub", capacity=concurrency)
    elif client == "kernel":
        spec = BackendSpec("stub", "openai", "stub", capacity=concurrency, model="stub", base_url=base_url)
        driver = spec.kernel_driver("fifo")
    elif client == "litellm":
        driver = LiteLLMDriver(base_url, "stub")
    else:
        raise ConfigError(f"client must be one of {CLIENTS}, got {client!r}", field="client")
    wl = uniform(concurrency, llm_calls=calls, prompt_tokens=16, output_tokens=tokens, name="overhead")
    run = await run_workload(
        wl, driver, concurrent=True, stagger_s=latency_s, salt=client, warmup=warmup, run_timeout=1800
    )
    s = summarize(run)
    ok = [c for c in run.calls("llm") if c.error is None]
    over = [(c.turnaround - latency_s) * 1e3 for c in ok]
    row: dict[str, Any] = {
        "client": client,
        "concurrency": concurrency,
        "calls": len(run.calls("llm")),
        "errors": s["errors"],
        "wall_s": s["wall_s"],
        "cpu_ms_per_call": s["cpu_ms_per_syscall"],
        "latency_ms": {k: v * 1e3 if k != "n" else v for k, v in s["request"]["turnaround_s"].items()},
        "overhead_ms": dist(over),
        "completion_tokens": s["completion_tokens"],
    }
    if isinstance(driver, KernelDriver):
        row["kernel_finished"] = driver.kernel.metrics.finished - warmup
    if isinstance(driver, LiteLLMDriver):
        row["litellm_version"] = driver.version
    return row


def _added(rows: list[dict[str, Any]]) -> None:
    """Fill each row's overhead added over the direct SDK at the same concurrency."""
    base = {r["concurrency"]: r for r in rows if r["client"] == "direct"}
    for r in rows:
        d = base.get(r["concurrency"])
        if d is None:
            continue
        r["added_ms"] = {q: r["overhead_ms"][q] - d["overhead_ms"][q] for q in ("avg", "p50", "p90", "p99")}
        r["added_cpu_ms_per_call"] = r["cpu_ms_per_call"] - d["cpu_ms_per_call"]


def overhead_experiment(
    concurrencies: list[int],
    *,
    calls: int = 3,
    min_samples: int = 300,
    tokens: int = 16,
    rate: float = 40.0,
    clients: tuple[str, ...] = CLIENTS,
    warmup: int = 4,
    pin: bool = True,
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every client at every concurrency against one fresh stub server per level.

    With ``repeats`` > 1 the clients run interleaved that many times, and each client's row keeps,
    per quantile, the lowest overhead seen (best-of, as interference only adds latency); the
    rows of every repeat are kept under ``all_rows``.
    """
    if rate <= 0:
        raise ConfigError(f"rate must be > 0, got {rate}", field="rate")
    if "litellm" in clients and not litellm_available():
        log("litellm is not installed: its column is skipped (pip install 'aios-agent-kernel[efficiency]')")
        clients = tuple(c for c in clients if c != "litellm")
    client_cpus, stub_cpu = cpu_split() if pin else (None, None)
    rows: list[dict[str, Any]] = []
    all_rows: list[dict[str, Any]] = []
    levels = []
    for n in concurrencies:
        latency_s = max(0.02, n / rate)
        per_agent = max(calls, math.ceil(min_samples / n))
        lat = StubLatency(fixed_ms=latency_s * 1e3, per_token_ms=0.0)
        levels.append({"concurrency": n, "stub_latency_s": latency_s, "calls_per_agent": per_agent})
        with StubServer(lat, cpu=stub_cpu) as stub, pinned(client_cpus):
            level: dict[str, list[dict[str, Any]]] = {}
            for rep in range(max(1, repeats)):
                for client in clients:
                    t = time.perf_counter()
                    row = asyncio.run(_one(client, stub.base_url, n, per_agent, tokens, latency_s, warmup))
                    row["stub"] = lat.label
                    row["repeat"] = rep
                    row["loadavg"] = [round(x, 2) for x in os.getloadavg()]
                    level.setdefault(client, []).append(row)
                    log(
                        f"  overhead {client:8s} N={n:4d} #{rep + 1}: "
                        f"p50 {row['overhead_ms']['p50']:7.2f} ms "
                        f"p99 {row['overhead_ms']['p99']:7.2f} ms over the stub's {latency_s * 1e3:.0f} ms, "
                        f"CPU {row['cpu_ms_per_call']:.2f} ms/call, errors {row['errors']} "
                        f"load {row['loadavg'][0]} ({time.perf_counter() - t:.0f} s)"
                    )
            for reps in level.values():
                all_rows.extend(reps)
                rows.append(_best(reps))
    _added(rows)
    return {
        "backend": "STUB loopback server (no model), fixed latency per level: see levels",
        "isolation": (
            f"stub in its own process pinned to core {stub_cpu}, "
            f"client pinned to {sorted(client_cpus or [])}; "
            f"offered load held at {rate:g} req/s by the stub's fixed latency L = max(20 ms, N / rate); "
            "agent starts spread over L; overhead = latency - L; added = client quantile - direct quantile"
        ),
        "rate_req_per_s": rate,
        "tokens_per_call": tokens,
        "levels": levels,
        "repeats": max(1, repeats),
        "rows": rows,
        "all_rows": all_rows,
        "clients": list(clients),
    }


def _best(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per client: per quantile the lowest overhead over the repeats, the lowest CPU."""
    row = dict(min(reps, key=lambda r: r["overhead_ms"]["p50"]))
    row["overhead_ms"] = {q: min(r["overhead_ms"][q] for r in reps) for q in reps[0]["overhead_ms"]}
    row["cpu_ms_per_call"] = min(r["cpu_ms_per_call"] for r in reps)
    row["errors"] = sum(r["errors"] for r in reps)
    return row


def summary_at(result: dict[str, Any], concurrency: int | None = None) -> dict[str, Any]:
    """The kernel's and LiteLLM's added overhead at ``concurrency`` (default: the highest)."""
    rows = cast(list[dict[str, Any]], result.get("rows", []))
    if not rows:
        return {}
    n = concurrency if concurrency is not None else max(r["concurrency"] for r in rows)
    at = {r["client"]: r for r in rows if r["concurrency"] == n}
    return {
        "concurrency": n,
        "kernel_added_ms": at.get("kernel", {}).get("added_ms"),
        "litellm_added_ms": at.get("litellm", {}).get("added_ms"),
        "kernel_added_cpu_ms": at.get("kernel", {}).get("added_cpu_ms_per_call"),
        "litellm_added_cpu_ms": at.get("litellm", {}).get("added_cpu_ms_per_call"),
    }
