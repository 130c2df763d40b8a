"""The kernel server: an OpenAI-compatible endpoint, syscalls over HTTP, tokens and metrics.

``aios serve`` runs it (config: the ``[kernel]`` and ``[server]`` tables of the config file, then
``AIOS_*``/``AIOS_SERVER_*`` variables, then flags; binds 127.0.0.1 unless told otherwise).
``create_app`` builds the ASGI app; ``ServerThread`` runs one in the background (tests,
embedding). Needs the ``serve`` extra (starlette, uvicorn). In short:

- Routes: ``POST /v1/chat/completions`` and ``GET /v1/models`` (OpenAI shapes, SSE streaming,
  tool calls, usage; ``chat``), ``POST /v1/syscalls/{kind}/{op}`` with ``{"args": {...},
  "timeout": s}`` answering ``{"result": ...}``, ``/v1/tool-runs`` (a client's own tool as a
  kernel tool syscall; ``tool_runs``), ``POST /v1/tool-loop``, ``GET /v1/stats``,
  ``GET /v1/whoami``, ``GET /metrics`` (Prometheus; ``prometheus``), ``GET /healthz`` and
  ``GET /openapi.json`` (the published schema, enforced on every request body; ``validate``).
- Who: every route but ``/healthz`` and ``/openapi.json`` needs a bearer token; a token stands
  for an agent and its privilege groups, ``X-AIOS-Agent`` may name only agents the token may act
  as (admins: anyone), and the access manager decides what that agent may touch (``auth``).
- Bounds: body size (413), message count and ``max_tokens`` (400), the kernel's queue and the
  non-LLM calls in progress (429 with ``Retry-After``); priorities within ±1000 and a token's
  ``min_priority`` floor.
- Values on the wire: JSON; bytes as ``{"$bytes": base64}`` both ways (a plain string argument
  where bytes are expected is taken as UTF-8); result records as their fields plus ``"$type"``;
  errors as OpenAI error objects whose ``code`` is the ``AIOSError`` class (``aios.wire``).
- Shutdown (SIGTERM/SIGINT): new requests get 503; in-flight ones get ``drain_seconds`` to
  finish; then the kernel stops and what is left ends with a 503 or an SSE ``error`` event.
  Storage is the kernel's SQLite file in ``data_dir``: it survives restarts.
"""

from __future__ import annotations

from aios.server.app import create_app
from aios.server.runner import ServerThread, serve
from aios.server.settings import ServerConfig, TokenConfig, load_server_config

__all__ = ["ServerConfig", "ServerThread", "TokenConfig", "create_app", "load_server_config", "serve"]
