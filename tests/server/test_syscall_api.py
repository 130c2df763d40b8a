"""``POST /v1/syscalls/{kind}/{op}``: the wire format, argument checking, the published schema."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from aios.server import ServerThread
from tests.server.conftest import ServeFactory, auth

pytestmark = pytest.mark.timeout(60)


def call(srv: ServerThread, kind: str, op: str, body: Any, who: str = "alice") -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/syscalls/{kind}/{op}", json=body, headers=auth(who), timeout=30)


def test_bytes_travel_as_base64_and_text_as_utf8(server: ServerThread):
    raw = bytes(range(256))
    assert call(
        server,
        "storage",
        "write",
        {"args": {"key": "bin", "value": {"$bytes": base64.b64encode(raw).decode()}}},
    ).json() == {"result": 1}
    assert call(server, "storage", "write", {"args": {"key": "txt", "value": "héllo"}}).json() == {
        "result": 1
    }
    got = call(server, "storage", "read", {"args": {"key": "bin"}}).json()["result"]
    assert base64.b64decode(got["$bytes"]) == raw
    txt = call(server, "storage", "read", {"args": {"key": "txt"}}).json()["result"]
    assert base64.b64decode(txt["$bytes"]).decode() == "héllo"


def test_result_records_carry_their_type_name(server: ServerThread):
    call(server, "storage", "write", {"args": {"key": "k", "value": "v"}})
    (version,) = call(server, "storage", "versions", {"args": {"key": "k"}}).json()["result"]
    assert version["$type"] == "VersionInfo" and version["writer"] == "alice" and version["version"] == 1
    listed = call(server, "tool", "list", {}).json()["result"]
    assert {t["function"]["name"] for t in listed} >= {"calculator", "file"}


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("storage/read", {"args": {}}, 400, "args.key"),
        ("storage/read", {"args": {"key": "k", "colour": "red"}}, 400, "args.colour"),
        ("storage/read", {"args": {"key": ["k"]}}, 400, "args.key"),
        ("storage/write", {"args": {"key": "k", "value": {"$bytes": "%%%"}}}, 400, "args.value"),
        ("storage/read", {"args": {"key": "k"}, "timeout": -1}, 400, "timeout"),
        ("storage/read", {"args": {"key": "k"}, "retries": 3}, 400, "retries"),
        ("storage/read", {"args": "key=k"}, 400, "args"),
        ("storage/read", {"args": {"key": "missing"}}, 404, None),
        ("storage/explode", {}, 404, "op"),
        ("memory/search", {"args": {"query": "x", "mode": "psychic"}}, 400, "args.mode"),
    ],
)
def test_malformed_syscalls_get_4xx_naming_what_is_wrong(
    server: ServerThread, path: str, body: Any, status: int, param: str | None
):
    kind, op = path.split("/")
    r = call(server, kind, op, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["param"] == param


def test_integral_numbers_are_accepted_where_integers_are_expected(server: ServerThread):
    call(server, "storage", "write", {"args": {"key": "k", "value": "one"}})
    call(server, "storage", "write", {"args": {"key": "k", "value": "two"}})
    r = call(server, "storage", "read", {"args": {"key": "k", "version": 1.0}})
    assert base64.b64decode(r.json()["result"]["$bytes"]) == b"one"


def test_storage_survives_a_restart_of_the_server(serve: ServeFactory, tmp_path: Any):
    first = serve(data_dir=tmp_path / "kept")
    assert call(first, "storage", "write", {"args": {"key": "diary", "value": "day 1"}}).status_code == 200
    mem = call(first, "memory", "add", {"args": {"text": "remember me"}}).json()["result"]
    first.stop()
    assert not first.alive
    second = serve(data_dir=tmp_path / "kept")
    r = call(second, "storage", "read", {"args": {"key": "diary"}})
    assert base64.b64decode(r.json()["result"]["$bytes"]) == b"day 1"
    versions = call(second, "storage", "versions", {"args": {"key": "diary"}}).json()["result"]
    assert [v["version"] for v in versions] == [1]
    assert isinstance(mem, str)  # memory lives in RAM by design; only what was evicted is stored


def test_the_published_schema_lists_every_syscall_with_its_arguments(server: ServerThread):
    doc = httpx.get(f"{server.url}/openapi.json").json()
    ops = {p.removeprefix("/v1/syscalls/") for p in doc["paths"] if p.startswith("/v1/syscalls/")}
    assert {"storage/read", "storage/write", "memory/add", "tool/call", "access/grant"} <= ops
    body = doc["paths"]["/v1/syscalls/storage/read"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    args = body["properties"]["args"]
    assert args["required"] == ["key"] and args["additionalProperties"] is False
    assert args["properties"]["version"] == {"type": ["integer", "null"]}
    write = doc["paths"]["/v1/syscalls/storage/write"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert {"type": "string"} in write["properties"]["args"]["properties"]["value"]["anyOf"]


def test_unknown_routes_and_methods_answer_json_errors(server: ServerThread):
    r = httpx.get(f"{server.url}/v2/nothing", headers=auth("alice"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFoundError"
    r = httpx.get(f"{server.url}/v1/chat/completions", headers=auth("alice"))
    assert r.status_code == 405 and r.json()["error"]["message"]


def test_too_many_pending_non_llm_calls_answer_429(serve: ServeFactory):
    srv = serve(server={"max_pending": 1})
    # A tool run holds a pending slot until its client reports back.
    run = httpx.post(f"{srv.url}/v1/tool-runs", json={"name": "t"}, headers=auth("alice")).json()
    r = httpx.post(f"{srv.url}/v1/tool-runs", json={"name": "t"}, headers=auth("alice"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    done = httpx.post(f"{srv.url}/v1/tool-runs/{run['id']}", json={"ok": True}, headers=auth("alice"))
    assert done.json() == {"status": "done"}
    assert httpx.post(f"{srv.url}/v1/tool-runs", json={"name": "t"}, headers=auth("alice")).status_code == 200


def test_a_tool_run_can_only_be_finished_by_its_agent(server: ServerThread):
    run = httpx.post(
        f"{server.url}/v1/tool-runs", json={"name": "t", "timeout": 5}, headers=auth("alice")
    ).json()
    assert 0 < run["deadline_s"] <= 5
    r = httpx.post(f"{server.url}/v1/tool-runs/{run['id']}", json={"ok": True}, headers=auth("bob"))
    assert r.status_code == 403
    r = httpx.post(
        f"{server.url}/v1/tool-runs/{run['id']}",
        json={"ok": False, "error": {"type": "E", "message": "m"}},
        headers=auth("alice"),
    )
    assert r.json() == {"status": "failed"}
    assert (
        httpx.post(
            f"{server.url}/v1/tool-runs/{run['id']}", json={"ok": True}, headers=auth("alice")
        ).status_code
        == 404
    )
