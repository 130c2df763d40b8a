"""An unpatched LangChain ``ChatOpenAI(base_url=...)`` agent against the server and the real model.

No adapter, no patch: LangChain speaks the OpenAI API to the kernel server, whose kernel schedules
each call. Runs where ``langchain_openai`` is installed (the framework environment built by
``scripts/make-env.sh langchain``); the server itself runs as a subprocess under a Python that has
the ``serve`` extra: ``AIOS_SERVER_PYTHON``, else this interpreter, else the repository's ``.venv``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

langchain_openai = pytest.importorskip("langchain_openai")

import httpx  # noqa: E402
from langchain_core.messages import HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

from tests.server.conftest import TOKENS, free_port  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(600)]
REPO = Path(__file__).resolve().parents[2]


def _server_python() -> str | None:
    if os.environ.get("AIOS_SERVER_PYTHON"):
        return os.environ["AIOS_SERVER_PYTHON"]
    if importlib.util.find_spec("uvicorn") and importlib.util.find_spec("starlette"):
        return sys.executable
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else None


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = _server_python()
    if python is None:
        pytest.skip("no Python with the serve extra (starlette, uvicorn) to run the server")
    tmp = tmp_path_factory.mktemp("lc-server")
    config = tmp / "aios.toml"
    config.write_text(
        f"""
[kernel]
data_dir = "{tmp / "data"}"
routes = {{ "gpt-4o-mini" = "embedded" }}
[[kernel.backends]]
name = "embedded"
kind = "llamacpp"

[server]
log_level = "warning"
[server.tokens."{TOKENS["alice"]}"]
agent = "langchain-agent"
"""
    )
    port = free_port()
    log = tmp / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [python, "-m", "aios.cli", "serve", "--config", str(config), "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < end, "the server did not come up"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def chat(url: str, **kw: Any) -> Any:
    return langchain_openai.ChatOpenAI(
        base_url=f"{url}/v1", api_key=TOKENS["alice"], model="gpt-4o-mini", temperature=0, max_retries=0, **kw
    )


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny and 21 degrees in {city}."


def test_invoke_and_stream_give_the_same_answer(url: str):
    llm = chat(url, max_tokens=12)
    question = "What is the capital of France? Answer in one word."
    answer = llm.invoke(question)
    assert "paris" in answer.content.lower()
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0
    pieces = [chunk.content for chunk in llm.stream(question)]
    assert len([p for p in pieces if p]) >= 2 and "".join(pieces) == answer.content


def test_a_tool_calling_agent_loop_runs_through_the_kernel(url: str):
    llm = chat(url, max_tokens=48)
    forced = llm.bind_tools([get_weather], tool_choice="get_weather")
    messages: list[Any] = [HumanMessage("What is the weather like in Paris?")]
    decision = forced.invoke(messages)
    (call,) = decision.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    messages += [decision, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = llm.invoke(messages)
    assert isinstance(final.content, str) and final.content.strip()
    stats = httpx.get(f"{url}/v1/stats", headers={"Authorization": f"Bearer {TOKENS['alice']}"}).json()
    agent = stats["agents"]["langchain-agent"]
    assert agent["by_kind"]["llm"] >= 2 and agent["failed"] == 0
    assert json.dumps(call["args"])  # the arguments were valid JSON from the grammar-constrained model
