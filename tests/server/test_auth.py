"""Tokens, acting agents and the access manager, seen from HTTP clients."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from aios.errors import ConfigError
from aios.server import ServerThread
from tests.server.conftest import TOKENS, ServeFactory, auth

pytestmark = pytest.mark.timeout(60)
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


def post(srv: ServerThread, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{srv.url}{path}", json=body, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tok-nobody-0123456789abcdef"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ],
)
def test_requests_without_a_valid_token_are_refused_with_401(server: ServerThread, headers: dict[str, str]):
    for method, path, body in [
        ("POST", "/v1/chat/completions", CHAT),
        ("GET", "/v1/models", None),
        ("POST", "/v1/syscalls/storage/list", {}),
        ("GET", "/metrics", None),
        ("GET", "/v1/stats", None),
    ]:
        r = httpx.request(method, f"{server.url}{path}", json=body, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "AuthenticationError" and r.json()["error"]["message"]


def test_health_and_the_schema_need_no_token(server: ServerThread):
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert schema["openapi"].startswith("3.1") and "/v1/chat/completions" in schema["paths"]


def test_a_token_acts_as_its_agent_and_only_as_agents_it_may_name(server: ServerThread):
    def whoami(who: str, agent: str | None = None) -> httpx.Response:
        headers = {**auth(who), **({"X-AIOS-Agent": agent} if agent else {})}
        return httpx.get(f"{server.url}/v1/whoami", headers=headers)

    assert whoami("alice").json()["agent"] == "alice"
    assert whoami("alice", "alice").json()["agent"] == "alice"
    refused = whoami("alice", "bob")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AccessDeniedError"
    assert whoami("team", "team-7").json()["agent"] == "team-7"
    assert whoami("team", "teammate").status_code == 403
    admin = whoami("admin", "anyone-at-all").json()
    assert admin["agent"] == "anyone-at-all" and admin["admin"] is True and admin["groups"] == ["admin"]
    assert whoami("alice", "x\x01y").status_code == 400


def test_one_agents_token_cannot_read_anothers_storage_without_a_grant(server: ServerThread):
    read = {"args": {"key": "notes/plan", "owner": "bob"}}
    assert (
        post(
            server,
            "/v1/syscalls/storage/write",
            {"args": {"key": "notes/plan", "value": "secret"}},
            auth("bob"),
        ).status_code
        == 200
    )
    denied = post(server, "/v1/syscalls/storage/read", read, auth("alice"))
    assert denied.status_code == 403 and "may not read" in denied.json()["error"]["message"]
    # Acting as bob is no way round it: alice's token may not name bob.
    assert (
        post(
            server,
            "/v1/syscalls/storage/read",
            {"args": {"key": "notes/plan"}},
            {**auth("alice"), "X-AIOS-Agent": "bob"},
        ).status_code
        == 403
    )
    grant = {"args": {"kind": "storage", "grantee": "alice", "ops": ["read"], "prefix": "notes/"}}
    assert post(server, "/v1/syscalls/access/grant", grant, auth("bob")).status_code == 200
    ok = post(server, "/v1/syscalls/storage/read", read, auth("alice"))
    assert ok.status_code == 200 and ok.json()["result"] == {"$bytes": "c2VjcmV0"}
    # The grant covers reading under notes/ only.
    write = {"args": {"key": "notes/plan", "owner": "bob", "value": "mine now"}}
    assert post(server, "/v1/syscalls/storage/write", write, auth("alice")).status_code == 403


def test_metrics_need_an_admin_token_unless_made_public(serve: ServeFactory):
    srv = serve()
    assert httpx.get(f"{srv.url}/metrics", headers=auth("alice")).status_code == 403
    assert httpx.get(f"{srv.url}/metrics", headers=auth("admin")).status_code == 200
    public = serve(server={"metrics_public": True})
    assert httpx.get(f"{public.url}/metrics").status_code == 200


def test_stats_show_a_plain_token_only_its_own_agents(server: ServerThread):
    for who in ("alice", "bob"):
        assert post(server, "/v1/chat/completions", CHAT, auth(who)).status_code == 200
    mine = httpx.get(f"{server.url}/v1/stats", headers=auth("alice")).json()
    assert set(mine["agents"]) == {"alice"}
    everyone = httpx.get(f"{server.url}/v1/stats", headers=auth("admin")).json()
    assert set(everyone["agents"]) == {"alice", "bob"}


def test_a_token_given_by_its_sha256_digest_works(serve: ServeFactory):
    secret = "a-secret-that-is-not-in-the-file"
    srv = serve(
        server={"tokens": {"sha256:" + hashlib.sha256(secret.encode()).hexdigest(): {"agent": "carol"}}}
    )
    r = httpx.get(f"{srv.url}/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert r.json()["agent"] == "carol"
    assert httpx.get(f"{srv.url}/v1/whoami", headers=auth("alice")).status_code == 401


def test_token_groups_come_from_the_access_configuration(serve: ServeFactory):
    tokens = {TOKENS["alice"]: {"agent": "alice", "groups": ["auditors"]}, TOKENS["bob"]: {"agent": "bob"}}
    srv = serve(kernel={"groups": {"auditors": ["storage:read"]}}, server={"tokens": tokens})
    assert (
        post(srv, "/v1/syscalls/storage/write", {"args": {"key": "k", "value": "v"}}, auth("bob")).status_code
        == 200
    )
    r = post(srv, "/v1/syscalls/storage/read", {"args": {"key": "k", "owner": "bob"}}, auth("alice"))
    assert r.status_code == 200, r.text
    assert httpx.get(f"{srv.url}/v1/whoami", headers=auth("alice")).json()["groups"] == ["auditors"]


def test_a_token_naming_an_undefined_group_stops_the_server_at_startup(serve: ServeFactory):
    with pytest.raises(ConfigError, match="group 'wizards'") as info:
        serve(server={"tokens": {TOKENS["alice"]: {"agent": "alice", "groups": ["wizards"]}}})
    assert info.value.field == "server.tokens[0].groups"
