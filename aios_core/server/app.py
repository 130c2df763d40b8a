"""The ASGI application: routes, authentication, the kernel's lifespan.

``create_app(kernel_config, server_config)`` builds a Starlette app whose lifespan starts a kernel
on the server's event loop and stops it (gracefully, see ``state``) at shutdown. Routes:

- ``GET /healthz`` (no token), ``GET /openapi.json`` (no token), ``GET /metrics`` (admin token,
  or none with ``metrics_public``)
- ``GET /v1/models``, ``POST /v1/chat/completions`` (OpenAI-compatible, ``chat``)
- ``POST /v1/syscalls/{kind}/{op}`` with ``{"args": {...}, "timeout": s}`` → ``{"result": ...}``
- ``POST /v1/tool-runs``, ``POST /v1/tool-runs/{id}`` (``tool_runs``), ``POST /v1/tool-loop``
- ``GET /v1/stats``, ``GET /v1/whoami``
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aios.config import KernelConfig, load_config
from aios.errors import AccessDeniedError, InvalidRequestError, KernelNotRunningError
from aios.kernel import Kernel
from aios.server import chat
from aios.server.auth import TokenBook
from aios.server.openapi import build_openapi, request_bodies
from aios.server.prometheus import CONTENT_TYPE, render
from aios.server.schemas import Schema, arg_schema, convert_args
from aios.server.settings import ServerConfig
from aios.server.state import (
    PRIORITY_HEADER,
    TIMEOUT_HEADER,
    Caller,
    ServerState,
    endpoint,
    header_int,
    json_object,
    read_json,
    timeout_of,
)
from aios.server.tool_runs import ToolRuns
from aios.server.validate import Validator
from aios.services import default_data_dir
from aios.wire import NotFoundError, encode, error_body

_log = logging.getLogger("aios.server")
VERSION = "0.1.0"


@dataclass(slots=True)
class _Context:
    state: ServerState
    runs: ToolRuns
    schemas: dict[tuple[str, str], Schema]
    openapi: dict[str, Any]
    #: operationId -> request body schema, enforced by ``validator`` as published.
    bodies: dict[str, Schema]
    validator: Validator

    def check(self, operation: str, body: Any) -> None:
        """Refuse ``body`` (400 naming the field) unless the published schema accepts it."""
        self.validator.check(body, self.bodies[operation])


def _ctx(request: Request) -> _Context:
    ctx = getattr(request.app.state, "aios", None)
    if not isinstance(ctx, _Context):
        raise KernelNotRunningError("the kernel server has not started (or has stopped)")
    return ctx


Route_ = Callable[[_Context, Caller, Request, Any], Coroutine[Any, Any, Response]]


def _route(
    fn: Route_, *, body: str | None = None, empty_body: Any = None
) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    """A route with a token; ``body`` names the operation whose published schema the body must meet."""

    async def inner(request: Request) -> Response:
        ctx = _ctx(request)
        caller = ctx.state.authenticate(request)
        raw = None
        if body is not None:
            raw = await read_json(request, ctx.state.config.max_body_bytes, empty=empty_body)
            if body != "syscall":  # a syscall's schema depends on the path: checked by the route
                ctx.check(body, raw)
        return await fn(ctx, caller, request, raw)

    return endpoint(lambda r: _ctx(r).state, inner)


# -- routes -------------------------------------------------------------------------------------


async def _healthz(request: Request) -> Response:
    ctx = getattr(request.app.state, "aios", None)
    if isinstance(ctx, _Context) and ctx.state.kernel.running and not ctx.state.draining:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "draining"}, status_code=503, headers={"Retry-After": "1"})


async def _openapi(request: Request) -> Response:
    return JSONResponse(_ctx(request).openapi)


async def _metrics(request: Request) -> Response:
    ctx = _ctx(request)
    state = ctx.state
    if not state.config.metrics_public:
        caller = state.authenticate(request)
        if not caller.principal.admin:
            raise AccessDeniedError("/metrics needs an admin token", agent=caller.principal.agent)
    gauges = {
        "requests_in_flight": float(state.in_flight),
        "pending": float(state.pending),
        "tool_runs": float(len(ctx.runs)),
    }
    return Response(render(state.kernel, gauges, state.responses), media_type=CONTENT_TYPE)


async def _models(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    return JSONResponse(chat.models_json(ctx.state.kernel))


async def _completions(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    return await chat.chat_completions(ctx.state, caller, request, raw)


async def _whoami(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    p = caller.principal
    return JSONResponse(
        {
            "agent": caller.agent,
            "token_agent": p.agent,
            "groups": sorted(p.groups),
            "admin": p.admin,
            "act_as": list(p.act_as),
        }
    )


async def _stats(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    stats = ctx.state.kernel.stats()
    if not caller.principal.admin:
        stats["agents"] = {a: m for a, m in stats["agents"].items() if caller.principal.may_act_as(a)}
    return JSONResponse(encode(stats))


async def _syscall(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    kind, op = request.path_params["kind"], request.path_params["op"]
    schema = ctx.schemas.get((kind, op))
    if schema is None:
        known = ", ".join(f"{k}/{o}" for k, o in sorted(ctx.schemas))
        raise NotFoundError(f"no syscall {kind}/{op}; known: {known}", field="op")
    ctx.check(f"syscall_{kind}_{op}", raw)
    body = json_object(raw)
    args = convert_args(schema, body.get("args", {}))
    timeout = timeout_of(body.get("timeout"), "timeout")
    state = ctx.state
    with state.pending_slot():
        result = await state.guard(
            request, state.kernel.syscall(caller.agent, kind, op, timeout=timeout, **args)
        )
    return JSONResponse({"result": encode(result)})


async def _tool_run_start(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    body = json_object(raw)
    timeout = timeout_of(body.get("timeout"), "timeout")
    out = await ctx.state.guard(request, ctx.runs.start(caller.agent, body.get("name"), timeout))
    return JSONResponse(out)


async def _tool_run_finish(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    body = json_object(raw)
    run_id = request.path_params["run_id"]
    out = await ctx.state.guard(
        request, ctx.runs.finish(run_id, caller.agent, body.get("ok"), body.get("error"))
    )
    return JSONResponse(out)


async def _tool_loop(ctx: _Context, caller: Caller, request: Request, raw: Any) -> Response:
    body = dict(json_object(raw))
    tools = body.pop("tools", None)
    choice = body.pop("tool_choice", "auto")
    rounds = body.pop("max_rounds", 3)
    if not isinstance(tools, list) or not tools or not all(isinstance(t, str | dict) for t in tools):
        raise InvalidRequestError(
            "tools must be a non-empty list of kernel tool names or specs", field="tools"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= 16:
        raise InvalidRequestError("max_rounds must be an integer in [1, 16]", field="max_rounds")
    if body.get("stream"):
        raise InvalidRequestError("the tool loop does not stream", field="stream")
    call = chat.parse_chat(body, ctx.state.config)
    call.request.tools, call.request.tool_choice = tools, choice
    priority = header_int(request, PRIORITY_HEADER)
    priority = caller.principal.priority(call.priority or 0 if priority is None else priority)
    timeout = timeout_of(request.headers.get(TIMEOUT_HEADER), "X-AIOS-Timeout")
    state = ctx.state
    with state.pending_slot():
        result = await state.guard(
            request,
            state.kernel.llm_with_tools(
                caller.agent, call.request, max_rounds=rounds, priority=priority, timeout=timeout
            ),
        )
    return JSONResponse({"result": encode(result)})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: InvalidRequestError = NotFoundError(f"no route {request.method} {request.url.path}", field="path")
    if exc.status_code != 404:
        err = InvalidRequestError(f"{request.method} {request.url.path}: {exc.detail}", field="method")
    return JSONResponse(error_body(err, exc.status_code), status_code=exc.status_code, headers=exc.headers)


# -- the app ------------------------------------------------------------------------------------


def create_app(
    kernel_config: KernelConfig | None = None,
    server_config: ServerConfig | None = None,
    *,
    kernel_factory: Callable[[], Kernel] | None = None,
) -> Starlette:
    """The server app; the kernel is built (``kernel_factory`` or from config) and started at startup."""
    cfg = (server_config or ServerConfig()).validate()

    def make_kernel() -> Kernel:
        if kernel_factory is not None:
            return kernel_factory()
        return Kernel(kernel_config if kernel_config is not None else load_config())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            state = await _startup(app)
        except BaseException as exc:
            app.state.startup_error = exc  # uvicorn only logs it; the runner raises it
            raise
        try:
            yield
        finally:
            await state.begin_drain()

    async def _startup(app: Starlette) -> ServerState:
        kernel = make_kernel()
        data_dir = Path(kernel.config.data_dir) if kernel.config.data_dir else default_data_dir()
        data_dir.mkdir(parents=True, exist_ok=True)  # the audit log opens in it before storage does
        await kernel.start()
        try:
            services = kernel.services
            tokens = TokenBook(cfg.tokens, services.access)
        except BaseException:
            await kernel.stop()
            raise
        if not len(tokens):
            _log.warning("no server tokens configured: every request but /healthz will be refused (401)")
        state = ServerState(kernel=kernel, tokens=tokens, config=cfg)
        runs = ToolRuns(kernel, cfg.max_pending)
        state.on_stop.append(runs.cancel_all)
        schemas = {key: arg_schema(entry.handler) for key, entry in services.table.items()}
        doc = build_openapi(cfg, schemas, VERSION)
        validator = Validator(doc["components"]["schemas"])
        app.state.aios = _Context(state, runs, schemas, doc, request_bodies(doc), validator)
        return state

    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        Route(
            "/openapi.json",
            endpoint(lambda r: _ctx(r).state, _openapi, open_when_draining=True),
            methods=["GET"],
        ),
        Route(
            "/metrics", endpoint(lambda r: _ctx(r).state, _metrics, open_when_draining=True), methods=["GET"]
        ),
        Route("/v1/models", _route(_models), methods=["GET"]),
        Route("/v1/chat/completions", _route(_completions, body="chat_completions"), methods=["POST"]),
        Route("/v1/stats", _route(_stats), methods=["GET"]),
        Route("/v1/whoami", _route(_whoami), methods=["GET"]),
        Route("/v1/syscalls/{kind}/{op}", _route(_syscall, body="syscall", empty_body={}), methods=["POST"]),
        Route("/v1/tool-runs", _route(_tool_run_start, body="tool_run_start"), methods=["POST"]),
        Route("/v1/tool-runs/{run_id}", _route(_tool_run_finish, body="tool_run_finish"), methods=["POST"]),
        Route("/v1/tool-loop", _route(_tool_loop, body="tool_loop"), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
