"""The efficiency benchmark: workloads, modes, the stub server, summaries, targets, and a tiny full run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import socket
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aios.benchmarks.efficiency import add_parser, main
from aios.benchmarks.efficiency.cli import add_arguments, options_from_args
from aios.benchmarks.efficiency.drivers import CallRecord
from aios.benchmarks.efficiency.litellm_cmp import _best
from aios.benchmarks.efficiency.llama_server import LlamaServer, _extract, build_llama_server, cached_build
from aios.benchmarks.efficiency.modes import BackendSpec, run_mode
from aios.benchmarks.efficiency.scale import derive, fit_linear
from aios.benchmarks.efficiency.stats import AgentRecord, RunRecord, dist, summarize
from aios.benchmarks.efficiency.stub_server import StubLatency, serve
from aios.benchmarks.efficiency.targets import evaluate, table
from aios.benchmarks.efficiency.workload import LLMStep, ToolStep, mixed, prompt_text, uniform
from aios.errors import ConfigError

# -- workloads ------------------------------------------------------------------------------------


def test_uniform_workload_places_each_tool_call_after_an_llm_call() -> None:
    wl = uniform(3, llm_calls=3, prompt_tokens=20, output_tokens=5, tool_calls=2, tool_seconds=0.1)
    steps = wl.agents[0].steps
    assert [type(s).__name__ for s in steps] == ["LLMStep", "ToolStep", "LLMStep", "ToolStep", "LLMStep"]
    assert (wl.llm_calls, wl.tool_calls, wl.syscalls) == (9, 6, 15)
    assert steps[1] == ToolStep(0.1)
    assert steps[0] == LLMStep(20, 5)


def test_mixed_workload_submits_long_agents_first() -> None:
    wl = mixed(
        long_agents=2,
        short_agents=3,
        long_calls=1,
        long_tokens=100,
        short_calls=2,
        short_tokens=8,
        prompt_tokens=16,
    )
    assert [a.group for a in wl.agents] == ["long", "long", "short", "short", "short"]
    assert wl.describe()["output_tokens_requested"] == 2 * 100 + 3 * 2 * 8


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"agents": 0}, "agents"),
        ({"output_tokens": -1}, "output_tokens"),
        ({"tool_calls": 4}, "tool_calls"),
    ],
)
def test_bad_workload_sizes_name_the_field(kwargs: dict[str, int], field: str) -> None:
    args: dict[str, Any] = {"agents": 2, "llm_calls": 3, "prompt_tokens": 10, "output_tokens": 4, **kwargs}
    agents = args.pop("agents")
    with pytest.raises(ConfigError) as err:
        uniform(agents, **args)
    assert err.value.field == field


def test_prompts_differ_per_agent_call_and_salt_and_have_about_the_asked_length() -> None:
    a = prompt_text("agent-1", 0, 64)
    assert a != prompt_text("agent-2", 0, 64)
    assert a != prompt_text("agent-1", 1, 64)
    assert a != prompt_text("agent-1", 0, 64, salt="kernel/fifo")
    assert a == prompt_text("agent-1", 0, 64)
    assert 56 <= len(a.split()) <= 72


# -- summaries ------------------------------------------------------------------------------------


def test_dist_reports_nearest_rank_percentiles() -> None:
    d = dist([float(i) for i in range(1, 101)])
    assert (d["n"], d["avg"], d["p50"], d["p90"], d["p99"], d["max"]) == (100, 50.5, 51.0, 90.0, 99.0, 100.0)
    assert dist([])["p99"] == 0.0


def test_summarize_counts_tokens_throughput_and_agent_waiting() -> None:
    a = AgentRecord("a", "short", first_submit=0.5, finished=3.0)
    a.calls = [
        CallRecord(
            "a", "llm", submitted=0.5, first_token=1.0, finished=2.0, prompt_tokens=10, completion_tokens=4
        ),
        CallRecord("a", "tool", submitted=2.0, finished=3.0),
    ]
    b = AgentRecord("b", "long", first_submit=0.0, finished=4.0)
    b.calls = [CallRecord("b", "llm", submitted=0.0, first_token=2.0, finished=4.0, completion_tokens=6)]
    s = summarize(RunRecord([a, b], wall_s=4.0, cpu_s=0.3))
    assert (s["syscalls"], s["llm_calls"], s["tool_calls"]) == (3, 2, 1)
    assert s["completion_tokens"] == 10
    assert s["throughput"]["completion_tokens_per_s"] == 2.5
    assert s["throughput"]["syscalls_per_s"] == 0.75
    assert s["cpu_ms_per_syscall"] == pytest.approx(100.0)
    # Agent a waited 0.5 s before submitting and 0.5 s for its first token.
    assert s["groups"]["short"]["agent_waiting_s"]["avg"] == 1.0
    assert s["groups"]["long"]["agent_turnaround_s"]["max"] == 4.0
    assert s["request"]["waiting_s"]["max"] == 2.0


def test_fit_linear_recovers_a_line_and_derive_reports_growth_and_memory() -> None:
    fit = fit_linear([250.0, 500.0, 1000.0], [1.5, 2.5, 4.5])
    assert fit["slope"] == pytest.approx(0.004)
    assert fit["intercept"] == pytest.approx(0.5)
    assert fit["r2"] == pytest.approx(1.0)
    points = [
        {"agents": 500, "cpu_us_per_syscall": 33.0, "rss_growth_mb": 10.0, "wall_s": 2.0},
        {"agents": 250, "cpu_us_per_syscall": 30.0, "rss_growth_mb": 5.0, "wall_s": 1.0},
    ]
    d = derive(points)
    assert d["agents"] == [250, 500]
    assert d["cpu_growth"] == pytest.approx(1.1)
    assert d["mb_per_1000_agents_max"] == pytest.approx(20.0)
    assert d["mb_per_1000_agents_slope"] == pytest.approx(20.0)


# -- modes, on the in-process sim backend (no server) ----------------------------------------------


async def test_kernel_mode_counts_every_llm_and_tool_syscall_exactly_once() -> None:
    spec = BackendSpec("sim", "sim", "sim", capacity=2, token_time=0.001)
    wl = uniform(5, llm_calls=2, prompt_tokens=8, output_tokens=4, tool_calls=1, tool_seconds=0.001)
    for policy in ("fifo", "rr", "fair", "priority"):
        r = await run_mode(spec, wl, "kernel", policy=policy, slice_tokens=2, warmup=2)
        assert r["errors"] == 0
        assert (r["llm_calls"], r["tool_calls"]) == (10, 5)
        k = r["kernel"]
        assert k["finished"] == k["expected"] == wl.syscalls == 15
        assert k["by_kind"] == {"llm": 10, "tool": 5}
        assert k["agents"] == 5
        assert r["completion_tokens"] == 10 * 4
        assert k["max_running"]["core"] <= 2


async def test_sequential_agents_finish_later_than_concurrent_ones() -> None:
    spec = BackendSpec("sim", "sim", "sim", capacity=4, token_time=0.002)
    wl = uniform(4, llm_calls=2, prompt_tokens=8, output_tokens=5)
    seq = await run_mode(spec, wl, "sequential")
    direct = await run_mode(spec, wl, "direct")
    kernel = await run_mode(spec, wl, "kernel", policy="fifo")
    for concurrent in (direct, kernel):
        assert seq["agent"]["turnaround_s"]["avg"] > concurrent["agent"]["turnaround_s"]["avg"]
        assert seq["wall_s"] > concurrent["wall_s"]
        assert concurrent["completion_tokens"] == seq["completion_tokens"] == 40


# -- the stub server, in process -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def stub(latency: StubLatency) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    task = asyncio.get_running_loop().create_task(serve(port, latency))
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5.0) as c:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get(url + "/health")).status_code == 200:
                    break
            await asyncio.sleep(0.01)
    try:
        yield url + "/v1"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_stub_streams_max_tokens_tokens_with_usage_and_labels_itself() -> None:
    async with stub(StubLatency(0, 0)) as url, httpx.AsyncClient(timeout=5.0) as c:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "one two three"}],
            "max_tokens": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        r = await c.post(url + "/chat/completions", json=body)
        assert r.headers["x-aios-stub"] == "fixed_ms=0;per_token_ms=0"
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        content = [ch["choices"][0]["delta"].get("content") for ch in chunks if ch["choices"]]
        assert content == [" tok", " tok", " tok", None]
        assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        assert {ch["model"] for ch in chunks} == {"stub-latency-model"}


async def test_stub_rejects_a_bad_max_tokens_naming_the_param() -> None:
    async with stub(StubLatency(0, 0)) as url, httpx.AsyncClient(timeout=5.0) as c:
        r = await c.post(url + "/chat/completions", json={"messages": [], "max_tokens": -2})
        assert r.status_code == 400
        assert r.json()["error"]["param"] == "max_tokens"
        plain = await c.post(url + "/chat/completions", json={"messages": [], "max_tokens": 2})
        assert plain.json()["choices"][0]["message"]["content"] == " tok tok"


async def test_kernel_and_direct_modes_on_the_stub_do_the_same_work() -> None:
    async with stub(StubLatency(1.0, 0.1)) as url:
        spec = BackendSpec(
            "stub", "openai", StubLatency(1.0, 0.1).label, capacity=3, model="stub", base_url=url
        )
        wl = uniform(3, llm_calls=2, prompt_tokens=8, output_tokens=6)
        direct = await run_mode(spec, wl, "direct")
        kernel = await run_mode(spec, wl, "kernel", policy="fair")
    assert direct["errors"] == kernel["errors"] == 0
    assert direct["completion_tokens"] == kernel["completion_tokens"] == 36
    assert kernel["kernel"]["finished"] == 6
    assert all(v > 0 for v in (direct["wall_s"], kernel["wall_s"]))


def test_stub_latency_label_says_stub_and_nominal_time_adds_up() -> None:
    lat = StubLatency(20.0, 2.0)
    assert "STUB" in lat.label and "no model" in lat.label
    assert lat.service_s(10) == pytest.approx(0.04)
    with pytest.raises(ConfigError):
        StubLatency(-1.0, 0.0)


# -- llama-server (no build here) ------------------------------------------------------------------


def test_llama_server_command_shares_the_context_among_slots(tmp_path: Path) -> None:
    srv = LlamaServer("/bin/llama-server", "/m.gguf", parallel=4, ctx_per_slot=512, threads=2)
    cmd = srv.command()
    assert cmd[cmd.index("--parallel") + 1] == "4"
    assert cmd[cmd.index("--ctx-size") + 1] == "2048"
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    with pytest.raises(ConfigError) as err:
        LlamaServer("/bin/llama-server", "/m.gguf", parallel=0)
    assert err.value.field == "parallel"


def test_no_cached_build_in_an_empty_cache_and_bad_jobs_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cached_build("0.0.0") is None
    with pytest.raises(ConfigError) as err:
        build_llama_server("0.0.0", jobs=0)
    assert err.value.field == "jobs"


def test_extract_keeps_only_the_server_build_parts_of_the_vendored_source(tmp_path: Path) -> None:
    sdist = tmp_path / "llama_cpp_python-9.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name in (
            "llama_cpp_python-9/vendor/llama.cpp/CMakeLists.txt",
            "llama_cpp_python-9/vendor/llama.cpp/tools/server/server.cpp",
            "llama_cpp_python-9/vendor/llama.cpp/docs/build.md",
            "llama_cpp_python-9/llama_cpp/llama.py",
        ):
            data = name.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    src = _extract(sdist, tmp_path / "src")
    files = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    assert files == ["CMakeLists.txt", "tools/server/server.cpp"]


def test_overhead_rows_keep_the_best_of_the_repeats_per_quantile() -> None:
    reps = [
        {"client": "kernel", "overhead_ms": {"p50": 2.0, "p99": 9.0}, "cpu_ms_per_call": 5.0, "errors": 0},
        {"client": "kernel", "overhead_ms": {"p50": 3.0, "p99": 4.0}, "cpu_ms_per_call": 4.5, "errors": 1},
    ]
    row = _best(reps)
    assert row["overhead_ms"] == {"p50": 2.0, "p99": 4.0}
    assert (row["cpu_ms_per_call"], row["errors"]) == (4.5, 1)


# -- targets and the command line ----------------------------------------------------------------


def test_targets_are_met_missed_or_not_run_from_the_numbers() -> None:
    result: dict[str, Any] = {
        "overhead": {
            "rows": [
                {
                    "client": "kernel",
                    "concurrency": 500,
                    "added_ms": {"p50": 0.2, "p99": 4.0},
                    "added_cpu_ms_per_call": 0.1,
                },
                {
                    "client": "litellm",
                    "concurrency": 500,
                    "added_ms": {"p50": 2.0, "p99": 9.0},
                    "added_cpu_ms_per_call": 5.0,
                },
            ]
        },
        "modes": {
            "llama-server": {
                "backend": {"description": "llama-server"},
                "derived": {"kernel/fifo": {"throughput_vs_direct": 0.97, "throughput_vs_sequential": 1.8}},
            }
        },
    }
    got = {t.name: t for t in evaluate(result)}
    assert got["kernel added latency per call, median"].status == "met"
    assert got["kernel added latency per call, p99"].status == "missed"
    assert got["kernel added / LiteLLM added (median)"].value == pytest.approx(0.1)
    assert got["kernel throughput / direct (fifo)"].status == "met"
    assert got["kernel throughput / sequential (fifo)"].status == "missed"
    assert got["fair: short agents' p99 turnaround / FIFO's"].status == "not run"
    assert "| kernel added latency per call, p99 | <= 3 ms | 4.000 ms | missed |" in table(list(got.values()))


def test_add_parser_registers_efficiency_with_a_handler() -> None:
    top = argparse.ArgumentParser()
    sub = top.add_subparsers(dest="command")
    add_parser(sub)
    args = top.parse_args(
        [
            "efficiency",
            "--quick",
            "--agents",
            "3",
            "--backends",
            "stub,url",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ]
    )
    assert callable(args.func)
    opts = options_from_args(args)
    assert (opts.quick, opts.agents, opts.backends, opts.base_url) == (
        True,
        3,
        ("stub", "url"),
        "http://127.0.0.1:9/v1",
    )


def test_unknown_backend_is_refused_by_the_parser() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--backends", "stub,vllm"])


@pytest.mark.slow
def test_tiny_quick_run_writes_json_and_plots_and_counts_every_syscall_once(tmp_path: Path) -> None:
    out = tmp_path / "eff"
    rc = main(
        [
            "--quick", "--out", str(out), "--backends", "stub", "--agents", "3", "--llm-calls", "2",
            "--output-tokens", "6", "--tool-calls", "1", "--tool-seconds", "0.01",
            "--stub-fixed-ms", "20", "--stub-per-token-ms", "1", "--policies", "fifo,fair",
            "--mixed-short", "3", "--mixed-long-tokens", "40",
            "--overhead-concurrency", "1", "4", "--overhead-min-samples", "8", "--overhead-rate", "400",
            "--no-litellm", "--scale", "4", "8", "--scale-calls", "2",
        ]
    )  # fmt: skip
    assert rc == 0
    result = json.loads((out / "efficiency.json").read_text())
    modes = result["modes"]["stub"]
    assert "STUB" in modes["backend"]["description"]
    assert "STUB" in result["overhead"]["backend"] and "STUB" in result["scale"]["backend"]
    expected = 3 * (2 + 1)
    by = {r["name"]: r for r in modes["runs"]}
    assert set(by) == {"sequential", "direct", "kernel/fifo", "kernel/fair"}
    for r in by.values():
        assert (r["syscalls"], r["errors"]) == (expected, 0)
    for name in ("kernel/fifo", "kernel/fair"):
        assert by[name]["kernel"]["finished"] == expected
        assert by[name]["kernel"]["by_kind"] == {"llm": 6, "tool": 3}
    seq = by["sequential"]["agent"]["turnaround_s"]["avg"]
    assert all(seq >= by[n]["agent"]["turnaround_s"]["avg"] for n in ("direct", "kernel/fifo", "kernel/fair"))
    for row in result["overhead"]["rows"]:
        assert row["errors"] == 0
        if row["client"] == "kernel":
            assert row["kernel_finished"] == row["calls"]
    for variant in ("stub", "sim"):
        for p in result["scale"][variant]["points"]:
            assert p["kernel_finished"] == p["syscalls"] == p["agents"] * 2
    assert {r["policy"] for r in result["mixed"]["stub"]["runs"]} == {"fifo", "fair"}
    assert {t["status"] for t in result["targets"]} <= {"met", "missed", "not run"}
    if importlib.util.find_spec("matplotlib") is not None:
        names = sorted(Path(p).name for p in result["plots"])
        assert names == ["mixed_stub.png", "modes_stub.png", "overhead.png", "scalability.png"]
        assert all((out / "plots" / n).stat().st_size > 1000 for n in names)
