"""Shutdown with calls in flight (every client gets an answer or a clean error), and ``aios serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from aios import sdk
from aios.backends.sim import SimBackend
from aios.errors import AIOSError
from tests.server.conftest import TOKENS, ServeFactory, auth, free_port

pytestmark = pytest.mark.timeout(90)


def _chat(url: str, max_tokens: int, *, stream: bool = False) -> dict[str, Any]:
    """One call; returns what the client saw: status, text, and any SSE error event."""
    body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": max_tokens, "stream": stream}
    try:
        with httpx.stream(
            "POST", f"{url}/v1/chat/completions", json=body, headers=auth("alice"), timeout=60
        ) as r:
            if not stream or r.status_code != 200:
                r.read()
                return {"status": r.status_code, "body": r.json()}
            events, error = 0, None
            for line in r.iter_lines():
                if line.startswith("event: error"):
                    error = "pending"
                elif line.startswith("data: ") and error == "pending":
                    error = json.loads(line[6:])["error"]
                elif line.startswith("data: "):
                    events += 1
            return {"status": r.status_code, "events": events, "error": error}
    except httpx.TransportError as exc:
        return {"status": None, "transport": type(exc).__name__}


def _until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_shutdown_finishes_short_calls_and_cancels_long_ones_cleanly(serve: ServeFactory):
    srv = serve(backends={"sim": SimBackend(capacity=3, token_time=0.02)}, server={"drain_seconds": 1.5})
    kernel = srv.app.state.aios.state.kernel
    out: dict[str, dict[str, Any]] = {}
    calls = {
        "long_stream": lambda: _chat(srv.url, 5000, stream=True),
        "long_plain": lambda: _chat(srv.url, 5000),
        "short": lambda: _chat(srv.url, 25),
        "queued": lambda: _chat(srv.url, 5000),
    }
    threads = []

    def admitted() -> int:
        return int(kernel.dispatcher.queued + sum(kernel.dispatcher.in_flight().values()))

    for name, fn in calls.items():
        t = threading.Thread(target=lambda n=name, f=fn: out.__setitem__(n, f()))
        t.start()
        threads.append(t)
        # One at a time, so that "queued" is the one left waiting for a slot.
        expected = len(threads)
        _until(lambda expected=expected: admitted() == expected)
    started = time.monotonic()
    srv.stop()
    assert not srv.alive and time.monotonic() - started < 20
    for t in threads:
        t.join(timeout=30)
    assert out["short"]["status"] == 200 and out["short"]["body"]["choices"][0]["finish_reason"] == "length"
    for name in ("long_plain", "queued"):
        assert out[name]["status"] == 503, out[name]
        assert out[name]["body"]["error"]["message"] and out[name]["body"]["error"]["code"] in (
            "CancelledError",
            "KernelNotRunningError",
        )
    stream = out["long_stream"]
    assert stream["status"] == 200 and stream["events"] > 1
    assert stream["error"]["code"] == "CancelledError" and "shutting down" in stream["error"]["message"]


def test_a_remote_tool_running_at_shutdown_ends_with_a_clean_error(serve: ServeFactory):
    srv = serve(server={"drain_seconds": 0.2})
    entered, release = threading.Event(), threading.Event()

    def tool() -> str:
        entered.set()
        release.wait(30)
        return "done"

    conn = sdk.connect(srv.url, token=TOKENS["alice"], default=False)
    try:
        result: list[BaseException | str] = []

        def run() -> None:
            try:
                result.append(conn.call(lambda k: k.tool("alice", "t", lambda: _in_thread(tool)), timeout=60))
            except BaseException as exc:
                result.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        assert entered.wait(20)
        srv.stop()
        release.set()
        runner.join(timeout=30)
    finally:
        conn.close()
    (err,) = result
    assert isinstance(err, AIOSError) and type(err).__name__ in ("KernelNotRunningError", "CancelledError"), (
        err
    )


async def _in_thread(fn: Callable[[], str]) -> str:
    import asyncio

    return await asyncio.to_thread(fn)


def test_aios_serve_reads_file_env_and_flags_and_drains_on_sigterm(tmp_path: Path):
    config = tmp_path / "aios.toml"
    config.write_text(
        f"""
[kernel]
data_dir = "{tmp_path / "data"}"
[[kernel.backends]]
name = "sim"
kind = "sim"
capacity = 1
token_time = 0.02

[server]
port = 1
drain_seconds = 0.5
[server.tokens."{TOKENS["alice"]}"]
agent = "alice"
"""
    )
    port = free_port()
    env = {**os.environ, "AIOS_SERVER_ADMIN_TOKEN": TOKENS["admin"], "AIOS_SERVER_PORT": "2"}
    log = tmp_path / "serve.log"
    cmd = ["-m", "aios.cli", "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, *cmd], env=env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        _until(up, timeout=60)
        # The flag's port won over the env's and the file's; the env's admin token works.
        assert httpx.get(f"{url}/v1/whoami", headers=auth("admin")).json()["admin"] is True
        done: list[dict[str, Any]] = []
        t = threading.Thread(target=lambda: done.append(_chat(url, 5000, stream=True)))
        t.start()
        _until(
            lambda: (
                'aios_core_in_flight{core="sim"} 1' in httpx.get(f"{url}/metrics", headers=auth("admin")).text
            )
        )
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly: death by SIGTERM, as asked.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert done[0]["status"] == 200 and done[0]["error"]["code"] == "CancelledError"
