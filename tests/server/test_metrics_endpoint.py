"""``GET /metrics``: the Prometheus text format, and the histograms behind it."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from aios.backends.sim import SimBackend
from aios.errors import BackendError
from aios.metrics import Histogram
from aios.server import ServerThread
from tests.server.conftest import ServeFactory, auth

pytestmark = pytest.mark.timeout(60)
_SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def scrape(srv: ServerThread) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics as (name, labels) -> value; checks each line's syntax on the way."""
    r = httpx.get(f"{srv.url}/metrics", headers=auth("admin"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for line in r.text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(
            (k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
            for k, v in _LABEL.findall(m[2] or "")
        )
        out[(m[1], labels)] = float(m[3])
    return out


def L(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def chat(srv: ServerThread, who: str, max_tokens: int, **headers: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "go"}], "max_tokens": max_tokens}
    return httpx.post(
        f"{srv.url}/v1/chat/completions", json=body, headers={**auth(who), **headers}, timeout=30
    )


def test_histogram_buckets_are_cumulative_and_bounds_inclusive():
    h = Histogram(bounds=(0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.cumulative() == [(0.1, 2), (1.0, 4), (float("inf"), 5)]
    assert (h.count, round(h.sum, 6)) == (5, 8.65)


def test_per_agent_counts_tokens_errors_and_histograms_add_up(serve: ServeFactory):
    def fail(req: object) -> BaseException | None:
        text = getattr(req, "messages", [{}])[0].get("content")
        return BackendError("simulated", backend="sim") if text == "fail" else None

    srv = serve(backends={"sim": SimBackend(capacity=2, token_time=0.001, fail=fail)})
    for _ in range(3):
        assert chat(srv, "alice", 4).status_code == 200
    assert chat(srv, "bob", 2).status_code == 200
    bad = httpx.post(
        f"{srv.url}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "fail"}]},
        headers=auth("bob"),
    )
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "BackendError"
    httpx.post(
        f"{srv.url}/v1/syscalls/storage/write", json={"args": {"key": "k", "value": "v"}}, headers=auth("bob")
    )
    m = scrape(srv)
    assert m[("aios_agent_syscalls_total", L(agent="alice", kind="llm"))] == 3
    assert m[("aios_agent_syscalls_total", L(agent="bob", kind="llm"))] == 2
    assert m[("aios_agent_syscalls_total", L(agent="bob", kind="storage"))] == 1
    assert m[("aios_agent_outcomes_total", L(agent="bob", status="failed"))] == 1
    assert m[("aios_agent_tokens_total", L(agent="alice", type="completion"))] == 12
    assert m[("aios_agent_tokens_total", L(agent="bob", type="completion"))] == 2
    assert m[("aios_errors_total", L(type="BackendError"))] == 1
    assert m[("aios_syscall_turnaround_seconds_count", L(kind="llm"))] == 5
    assert m[("aios_syscall_waiting_seconds_bucket", L(kind="llm", le="+Inf"))] == 5
    assert m[("aios_syscall_turnaround_seconds_count", L(kind="storage"))] == 1
    assert m[("aios_syscalls_finished_total", L())] == 6
    assert m[("aios_core_capacity", L(core="sim"))] == 2
    assert m[("aios_http_responses_total", L(code="502"))] == 1
    buckets = sorted(
        (float(dict(lab)["le"]), v)
        for (name, lab), v in m.items()
        if name == "aios_syscall_waiting_seconds_bucket" and dict(lab)["kind"] == "llm"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)


def test_in_flight_queue_and_preemptions_are_visible(serve: ServeFactory):
    srv = serve(backends={"sim": SimBackend(capacity=1, token_time=0.01)}, kernel={"slice_tokens": 5})
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda w=w: results.append(chat(srv, w, 60).status_code))
        for w in ("alice", "bob")
    ]
    for t in threads:
        t.start()
    end = time.monotonic() + 20
    while True:
        m = scrape(srv)
        if m[("aios_core_in_flight", L(core="sim"))] == 1 and m[("aios_queue_length", L())] == 1:
            break
        assert time.monotonic() < end, "never saw one running and one queued"
        time.sleep(0.01)
    assert m[("aios_server_requests_in_flight", L())] >= 2
    for t in threads:
        t.join(timeout=30)
    assert results == [200, 200]
    m = scrape(srv)
    assert m[("aios_preemptions_total", L())] >= 1
    assert m[("aios_preemptions_total", L())] == sum(
        v for (name, _), v in m.items() if name == "aios_agent_preemptions_total"
    )


def test_label_values_are_escaped(server: ServerThread):
    weird = 'we"ird\\agent'
    assert chat(server, "admin", 1, **{"X-AIOS-Agent": weird}).status_code == 200
    assert scrape(server)[("aios_agent_syscalls_total", L(agent=weird, kind="llm"))] == 1
