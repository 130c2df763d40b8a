"""A stand-in for ``vllm serve MODEL``: an OpenAI-compatible streaming server with canned answers.

Run as ``fake_vllm.py serve MODEL --host H --port P [flags...]``. It records its argv and every
request body (JSON lines) in ``$FAKE_VLLM_RECORD``, answers ``/health`` with 503 twice (so the
harness must poll) and then 200, thinks "I will answer." in text, and answers a forced tool call
with ``finish`` whose answer is ``$FAKE_VLLM_ANSWER``, each after ``$FAKE_VLLM_DELAY`` seconds.
SIGTERM stops it (and is recorded).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECORD = os.environ.get("FAKE_VLLM_RECORD", os.devnull)
ANSWER = os.environ.get("FAKE_VLLM_ANSWER", "42")
#: Seconds each completion takes (to interrupt a run in the middle).
DELAY = float(os.environ.get("FAKE_VLLM_DELAY", "0"))


def record(entry: dict[str, Any]) -> None:
    with open(RECORD, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class Handler(BaseHTTPRequestHandler):
    health_calls = 0

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path == "/health":
            Handler.health_calls += 1
            self.send_response(200 if Handler.health_calls > 2 else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        record({"request": body})
        time.sleep(DELAY)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if body.get("tools") and body.get("tool_choice") == "required":
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "finish", "arguments": json.dumps({"answer": ANSWER})}}  # fmt: skip
            self.wfile.write(chunk({"role": "assistant", "tool_calls": [call]}))
            self.wfile.write(chunk({}, "tool_calls"))
        else:
            for piece in ("I will ", "answer."):
                self.wfile.write(chunk({"content": piece}))
            self.wfile.write(chunk({}, "stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main() -> None:
    argv = sys.argv[1:]
    record({"argv": argv})
    host, port = argv[argv.index("--host") + 1], int(argv[argv.index("--port") + 1])
    server = ThreadingHTTPServer((host, port), Handler)

    def stop(signum: int, frame: Any) -> None:
        record({"stopped": signum})
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
