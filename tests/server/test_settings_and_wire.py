"""Server configuration (file, environment, flags) and the wire format shared with the remote SDK."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aios.errors import (
    BackendError,
    ConfigError,
    DeadlineExceededError,
    InvalidRequestError,
    KeyNotFoundError,
    QueueFullError,
)
from aios.managers.access import Grant
from aios.managers.agent_memory import MemoryEntry
from aios.types import LLMResult, ToolCall, Usage
from aios.wire import AuthenticationError, decode, encode, error_body, error_from_body, status_of

TOKEN = "tok-file-0123456789abcdef"


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    from aios.server.settings import load_server_config

    path = tmp_path / "aios.toml"
    path.write_text(text)
    return load_server_config(path, env=env or {}, overrides=overrides)


def test_flags_beat_the_environment_which_beats_the_file(tmp_path: Path):
    text = (
        f'[kernel]\nscheduler = "rr"\n[server]\nport = 9000\nhost = "0.0.0.0"\n'
        f'[server.tokens."{TOKEN}"]\nagent = "a"\n'
    )
    cfg = _load(tmp_path, text, {"AIOS_SERVER_PORT": "9100"})
    assert (cfg.host, cfg.port, cfg.tokens[TOKEN].agent) == ("0.0.0.0", 9100, "a")
    assert _load(tmp_path, text, {"AIOS_SERVER_PORT": "9100"}, port=9200, host=None).port == 9200


def test_the_default_binds_loopback_only(tmp_path: Path):
    cfg = _load(tmp_path, "[server]\n")
    assert cfg.host == "127.0.0.1" and cfg.tokens == {}


def test_an_admin_token_and_a_tokens_file_come_from_the_environment(tmp_path: Path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[tokens."{TOKEN}"]\nagent = "bot"\ngroups = ["g"]\nact_as = ["bot-*"]\nmin_priority = 5\n'
    )
    cfg = _load(
        tmp_path, "[server]\n", {"AIOS_SERVER_TOKENS_FILE": str(tokens), "AIOS_SERVER_ADMIN_TOKEN": "x" * 16}
    )
    bot = cfg.tokens[TOKEN]
    assert (bot.agent, bot.groups, bot.act_as, bot.min_priority) == ("bot", ("g",), ("bot-*",), 5)
    assert cfg.tokens["x" * 16].groups == ("admin",)


@pytest.mark.parametrize(
    ("text", "env", "field"),
    [
        ("[server]\nport = 70000\n", {}, "server.port"),
        ("[server]\ncolour = 1\n", {}, "server.colour"),
        ('[server.tokens."short"]\nagent = "a"\n', {}, "server.tokens"),
        (f'[server.tokens."{TOKEN}"]\nagent = ""\n', {}, "server.tokens[0].agent"),
        (f'[server.tokens."{TOKEN}"]\nagent = "a"\ngroups = "admin"\n', {}, "server.tokens[0].groups"),
        ('scheduler = "rr"\n[server]\nport = 1\n', {}, "kernel"),
        ("[server]\nmax_pending = 0\n", {}, "server.max_pending"),
        ("[server]\nretry_after = true\n", {}, "server.retry_after"),
        ("[server]\n", {"AIOS_SERVER_PORT": "eighty"}, "AIOS_SERVER_PORT"),
        ("[server]\ndrain_seconds = -1\n", {}, "server.drain_seconds"),
    ],
)
def test_bad_settings_raise_config_errors_naming_the_setting(
    tmp_path: Path, text: str, env: dict[str, str], field: str
):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, env)
    assert info.value.field == field


def test_an_error_message_never_echoes_a_token(tmp_path: Path):
    secret = "tok-super-secret-value-42"
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, f'[server.tokens."{secret}"]\nagent = 7\n')
    assert "secret" not in str(info.value) and "42" not in str(info.value)


def test_values_round_trip_through_the_wire_format():
    result = LLMResult(
        text="hi", tool_calls=[ToolCall("c", "f", "{}")], usage=Usage(1, 2, 3), segments=["h", "i"]
    )
    entry = MemoryEntry(id="e", agent="a", text="t", metadata={"k": [1]}, created=1.0, history=(2.0, 1.0))
    grant = Grant("o", "storage", "g", "p/", frozenset({"read", "write"}))
    value = {"r": result, "e": entry, "g": grant, "b": b"\x00\xff", "n": [math.inf, 1.5], "t": (1, 2)}
    wire = encode(value)
    assert (
        wire["b"] == {"$bytes": "AP8="} and wire["n"] == [None, 1.5] and wire["g"]["ops"] == ["read", "write"]
    )
    back = decode(wire)
    assert back["r"] == result and back["e"] == entry and back["g"] == grant and back["b"] == b"\x00\xff"
    assert isinstance(back["e"].history, tuple) and isinstance(back["g"].ops, frozenset)
    assert decode(wire, rebuild=False)["e"]["$type"] == "MemoryEntry"
    assert decode({"$type": "os.system", "x": 1}) == {"$type": "os.system", "x": 1}  # never a foreign class


def test_errors_keep_their_class_and_attributes_across_the_wire():
    cases = [
        (KeyNotFoundError("gone", owner="bob", key="k", version=3, agent="alice"), 404),
        (InvalidRequestError("bad", field="args.key"), 400),
        (QueueFullError("full"), 429),
        (BackendError("down", backend="vllm", status_code=502, retryable=True), 502),
        (DeadlineExceededError("late"), 504),
        (AuthenticationError("who?"), 401),
    ]
    for exc, status in cases:
        assert status_of(exc) == status
        back = error_from_body(status, error_body(exc))
        assert type(back) is type(exc) and back.message == exc.message and back.retryable == exc.retryable
        for attr in ("field", "owner", "key", "version", "backend", "status_code", "agent"):
            assert getattr(back, attr, None) == getattr(exc, attr, None), attr
    unknown = error_from_body(503, {"error": {"message": "m", "code": "NoSuchError"}})
    assert type(unknown).__name__ == "KernelNotRunningError" and unknown.message == "m"
    assert "HTTP 502" in error_from_body(502, "<html>bad gateway</html>").message
