"""The ``aios`` command: ``aios demo`` and ``aios serve`` (more subcommands arrive with the harness)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aios.errors import AIOSError


def _demo(args: argparse.Namespace) -> int:
    from aios.config import load_config
    from aios.demo import format_table, run_demo

    overrides: dict[str, object] = {"scheduler": args.scheduler}
    if args.slice_tokens is not None:
        overrides["slice_tokens"] = args.slice_tokens
    if args.backend == "sim":
        overrides["backends"] = [{"name": "sim", "kind": "sim", "token_time": 0.005}]
    elif args.base_url:
        overrides["backends"] = [
            {"name": "remote", "kind": "openai", "base_url": args.base_url, "model": args.model or "default"}
        ]
    cfg = load_config(args.config, overrides=overrides)
    rows, totals = asyncio.run(run_demo(args.agents, args.scheduler, args.max_tokens, cfg))
    print(json.dumps(totals) if args.json else format_table(rows, totals))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from aios.config import load_config
    from aios.server.runner import serve
    from aios.server.settings import load_server_config

    overrides = {
        "host": args.host,
        "port": args.port,
        "tokens_file": args.tokens_file,
        "log_level": args.log_level,
        "drain_seconds": args.drain_seconds,
        "metrics_public": True if args.metrics_public else None,
    }
    server_config = load_server_config(args.config, overrides=overrides)
    return serve(load_config(args.config), server_config)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aios`` command."""
    parser = argparse.ArgumentParser(prog="aios", description="AIOS: an LLM agent operating system")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="N concurrent agents share one model under a policy")
    demo.add_argument("--agents", type=int, default=6)
    demo.add_argument("--scheduler", default="fair", choices=["fifo", "rr", "priority", "fair"])
    demo.add_argument("--max-tokens", type=int, default=48)
    demo.add_argument("--slice-tokens", type=int, default=None)
    demo.add_argument("--backend", choices=["embedded", "sim"], default="embedded")
    demo.add_argument(
        "--base-url", default=None, help="an OpenAI-compatible server instead of the embedded model"
    )
    demo.add_argument("--model", default=None)
    demo.add_argument("--config", default=None, help="a TOML config file")
    demo.add_argument("--json", action="store_true", help="print the totals as JSON")
    demo.set_defaults(func=_demo)
    srv = sub.add_parser(
        "serve",
        help="serve the kernel over HTTP: OpenAI-compatible chat, syscalls, metrics (needs the serve extra)",
        description="Config: the [kernel] and [server] tables of --config (or AIOS_CONFIG), then "
        "AIOS_* / AIOS_SERVER_* variables, then these flags. Binds 127.0.0.1 unless told otherwise.",
    )
    srv.add_argument("--config", default=None, help="a TOML file with [kernel] and [server] tables")
    srv.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=None, help="port (default 8000; 0 picks a free one)")
    srv.add_argument("--tokens-file", default=None, help="a TOML file with a [tokens] table")
    srv.add_argument("--log-level", default=None, choices=["critical", "error", "warning", "info", "debug"])
    srv.add_argument(
        "--drain-seconds", type=float, default=None, help="grace for in-flight calls at shutdown"
    )
    srv.add_argument("--metrics-public", action="store_true", help="serve /metrics without a token")
    srv.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except AIOSError as exc:
        print(f"aios: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
