"""Server configuration: the ``[server]`` table of the config file, ``AIOS_SERVER_*`` variables, flags.

Precedence: overrides (command-line flags) > environment > the file > defaults. A config file
that has a ``[server]`` table keeps the kernel's settings under ``[kernel]``. Tokens map a bearer
token to an agent and its privilege groups::

    [server.tokens."9f2c...a long random string"]
    agent = "alice"
    groups = ["auditors"]          # groups of the kernel's access configuration (or "admin")
    act_as = ["alice-*"]           # other agent names this token may name in X-AIOS-Agent
    min_priority = 0               # the most urgent priority it may ask for (None: any)

A key may also be ``"sha256:<hex digest of the token>"`` so the file need not hold the secret.
``AIOS_SERVER_TOKENS_FILE`` names a TOML file with a ``[tokens]`` table of the same shape, and
``AIOS_SERVER_ADMIN_TOKEN`` adds one token for agent ``admin`` in group ``admin``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aios.config import positive_int
from aios.errors import ConfigError

_HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN = re.compile(r"^[\x21-\x7e]{16,512}$")
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """What one bearer token stands for."""

    agent: str
    groups: tuple[str, ...] = ()
    #: fnmatch patterns of the other agents this token may name in ``X-AIOS-Agent``.
    act_as: tuple[str, ...] = ()
    #: The lowest (most urgent) priority value the token may ask for; None: no floor.
    min_priority: int | None = 0


@dataclass(slots=True)
class ServerConfig:
    """Everything ``aios serve`` needs besides the kernel's own configuration."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Bearer token (or ``sha256:<hex>``) -> what it stands for.
    tokens: dict[str, TokenConfig] = field(default_factory=dict)
    max_body_bytes: int = 4 * 1024 * 1024
    max_messages: int = 512
    #: Upper bound of ``max_tokens`` a request may ask for.
    max_tokens_limit: int = 32_768
    #: ``max_tokens`` when a chat request names none.
    default_max_tokens: int = 1024
    #: Non-LLM syscalls and tool runs in progress at once; beyond this the server answers 429.
    max_pending: int = 1024
    #: Seconds a client is told to wait (``Retry-After``) after a 429 or 503.
    retry_after: int = 1
    #: On shutdown, seconds in-flight requests get to finish before they are cancelled.
    drain_seconds: float = 10.0
    #: Serve ``/metrics`` without a token (for a scraper on a trusted network).
    metrics_public: bool = False
    log_level: str = "info"

    def validate(self) -> ServerConfig:
        """Check every field; raise ``ConfigError`` naming the first bad one."""
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError("server.host must be a non-empty string", field="server.host")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"server.port must be in 0..65535, got {self.port!r}", field="server.port")
        for name in (
            "max_body_bytes",
            "max_messages",
            "max_tokens_limit",
            "default_max_tokens",
            "max_pending",
        ):
            positive_int(getattr(self, name), f"server.{name}")
        positive_int(self.retry_after, "server.retry_after")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ConfigError(
                "server.default_max_tokens exceeds server.max_tokens_limit", field="server.default_max_tokens"
            )
        if isinstance(self.drain_seconds, bool) or not isinstance(self.drain_seconds, int | float):
            raise ConfigError("server.drain_seconds must be a number", field="server.drain_seconds")
        if self.drain_seconds < 0:
            raise ConfigError("server.drain_seconds must be >= 0", field="server.drain_seconds")
        if not isinstance(self.metrics_public, bool):
            raise ConfigError("server.metrics_public must be true or false", field="server.metrics_public")
        if self.log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise ConfigError(
                f"server.log_level {self.log_level!r} is not a log level", field="server.log_level"
            )
        for key in self.tokens:
            _check_token_key(key)
        return self


def _check_token_key(key: object) -> None:
    if not isinstance(key, str) or not (_HASHED.match(key) or _TOKEN.match(key)):
        raise ConfigError(
            f"a server token must be {MIN_TOKEN_CHARS}..512 printable characters without spaces, "
            "or 'sha256:<64 hex digits>'",
            field="server.tokens",
        )


def token_config(raw: object, where: str) -> TokenConfig:
    """A ``TokenConfig`` from a TOML table; ``ConfigError`` naming the bad entry."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table with an 'agent'", field=where)
    unknown = set(raw) - {"agent", "groups", "act_as", "min_priority"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}", field=f"{where}.{sorted(unknown)[0]}")
    agent = raw.get("agent")
    if not isinstance(agent, str) or not agent or len(agent) > 200:
        raise ConfigError(
            f"{where}.agent must be a non-empty string (at most 200 chars)", field=f"{where}.agent"
        )
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("groups", "act_as"):
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}.{name} must be a list of strings", field=f"{where}.{name}")
        lists[name] = tuple(value)
    floor = raw.get("min_priority", 0)
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, int)):
        raise ConfigError(f"{where}.min_priority must be an integer", field=f"{where}.min_priority")
    return TokenConfig(agent=agent, groups=lists["groups"], act_as=lists["act_as"], min_priority=floor)


def _tokens(raw: object, where: str) -> dict[str, TokenConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table of token -> {{agent, groups}}", field=where)
    out: dict[str, TokenConfig] = {}
    for i, (key, value) in enumerate(raw.items()):
        _check_token_key(key)
        # Named by position: an error message must not echo part of a secret.
        out[key] = token_config(value, f"{where}[{i}]")
    return out


def _read_toml(path: str | Path, what: str) -> dict[str, Any]:
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {p} does not exist", field=what) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {p} is not valid TOML: {exc}", field=what) from None


_SIMPLE = {f.name for f in fields(ServerConfig)} - {"tokens"}


def server_config_from_mapping(data: Mapping[str, Any]) -> ServerConfig:
    """Build from a ``[server]`` table; unknown keys are errors, not ignored."""
    if not isinstance(data, Mapping):
        raise ConfigError("[server] must be a table", field="server")
    unknown = set(data) - _SIMPLE - {"tokens"}
    if unknown:
        raise ConfigError(
            f"unknown server setting(s) {sorted(unknown)}; known: {sorted(_SIMPLE | {'tokens'})}",
            field=f"server.{sorted(unknown)[0]}",
        )
    cfg = ServerConfig(**{k: data[k] for k in _SIMPLE & set(data)})
    if "tokens" in data:
        cfg.tokens = _tokens(data["tokens"], "server.tokens")
    return cfg.validate()


def load_server_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """The effective server configuration: file, then ``AIOS_SERVER_*`` variables, then overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("AIOS_CONFIG")
    if path:
        whole = _read_toml(path, "AIOS_CONFIG")
        if "server" in whole and "kernel" not in whole and set(whole) != {"server"}:
            raise ConfigError(
                "a config file with a [server] table keeps the kernel's settings under [kernel]",
                field="kernel",
            )
        data = dict(whole.get("server", {}))
    if env.get("AIOS_SERVER_HOST"):
        data["host"] = env["AIOS_SERVER_HOST"]
    if env.get("AIOS_SERVER_PORT"):
        try:
            data["port"] = int(env["AIOS_SERVER_PORT"])
        except ValueError:
            raise ConfigError("AIOS_SERVER_PORT must be an integer", field="AIOS_SERVER_PORT") from None
    cfg = server_config_from_mapping(data)
    tokens = dict(cfg.tokens)
    tokens_file = (overrides or {}).get("tokens_file") or env.get("AIOS_SERVER_TOKENS_FILE")
    if tokens_file:
        tokens.update(_tokens(_read_toml(tokens_file, "AIOS_SERVER_TOKENS_FILE").get("tokens", {}), "tokens"))
    if env.get("AIOS_SERVER_ADMIN_TOKEN"):
        admin = env["AIOS_SERVER_ADMIN_TOKEN"]
        _check_token_key(admin)
        tokens[admin] = TokenConfig(agent="admin", groups=("admin",), min_priority=None)
    rest = {k: v for k, v in (overrides or {}).items() if k != "tokens_file" and v is not None}
    tokens.update(rest.pop("tokens", {}))
    unknown = set(rest) - _SIMPLE - {"tokens"}
    if unknown:
        raise ConfigError(
            f"unknown server override(s) {sorted(unknown)}", field=f"server.{sorted(unknown)[0]}"
        )
    return replace(cfg, tokens=tokens, **rest).validate()
