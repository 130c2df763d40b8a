"""Crash and restart: ``kill -9`` an ``aios serve`` process during writes, restart it, count what survived.

Each round starts ``aios serve`` (a child process) on the same data directory, lets several agents
write over HTTP at once (storage writes of varied sizes and memory entries, with a memory budget
so small that entries are evicted to storage all the time), kills the server with SIGKILL at a
random moment while requests are in flight, and restarts it. A write counts as *acknowledged*
only when its HTTP response arrived (the server answers after the kernel returned, and storage
returns only after the commit); a write cut by the kill is not counted, whether or not it landed.

What must survive, and is checked after every restart (and for everything at the end):

- every acknowledged storage write, at its version, byte for byte; the database passes
  ``PRAGMA integrity_check`` and every agent's keys can be listed;
- every memory entry the client *saw evicted* (``memory recent`` reported it ``resident=False``):
  memory is RAM-only except evicted entries, which the memory manager writes to the agent's
  storage under ``memory/<entry id>`` before the operation that evicted them returns. Such an
  entry's stored copy must hold its exact text; so must every other acknowledged entry found
  there (evicted without the client looking). Entries still resident at the kill are lost by
  design, and are only counted.

Whether an evicted entry can still be read *through the memory API* after a restart (``memory
get`` by its id) is measured and reported separately (``memory_evicted_retrievable``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aios.wire import decode

TOKEN = "chaos-crash-admin-token-0123456789"
STORE_PREFIX = "memory/"


@dataclass(slots=True)
class CrashConfig:
    """Rounds, writers and timing of a crash run."""

    rounds: int = 20
    writers: int = 8
    seed: int = 20
    #: The kill comes this many seconds (uniform) after the writers started.
    min_run_s: float = 0.4
    max_run_s: float = 1.6
    memory_budget_bytes: int = 2048
    startup_timeout: float = 90.0


@dataclass(slots=True)
class CrashReport:
    """What was acknowledged, what was found after the restarts, and what went missing."""

    rounds: int = 0
    kills: int = 0
    attempts: int = 0
    storage_acked: int = 0
    storage_found: int = 0
    storage_lost: list[str] = field(default_factory=list)
    memory_acked: int = 0
    #: Acknowledged entries the client saw reported ``resident=False`` before a kill.
    memory_seen_evicted: int = 0
    #: Acknowledged entries found in storage after the restarts with their exact text.
    memory_in_storage: int = 0
    #: Entries seen evicted but missing from storage, or stored with another text (must be []).
    memory_evicted_lost: list[str] = field(default_factory=list)
    #: Of ``memory_in_storage``, how many ``memory get`` by id still returns after a restart.
    memory_evicted_retrievable: int = 0
    #: Acknowledged entries not in storage: resident (RAM-only) at a kill, lost by design.
    memory_not_in_storage: int = 0
    integrity: list[str] = field(default_factory=list)
    killed_in_flight: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers (lost lists cut to 10)."""
        return {
            "rounds": self.rounds,
            "kills": self.kills,
            "write_attempts": self.attempts,
            "requests_cut_by_kill": self.killed_in_flight,
            "storage_acked": self.storage_acked,
            "storage_found": self.storage_found,
            "storage_lost": self.storage_lost[:10],
            "memory_acked": self.memory_acked,
            "memory_seen_evicted_before_a_kill": self.memory_seen_evicted,
            "memory_found_in_storage": self.memory_in_storage,
            "memory_evicted_lost": self.memory_evicted_lost[:10],
            "memory_retrievable_by_id_after_restart": self.memory_evicted_retrievable,
            "memory_resident_at_kill_lost_by_design": self.memory_not_in_storage,
            "integrity_checks": sorted(set(self.integrity)),
            "elapsed_s": round(self.elapsed_s, 1),
        }


@dataclass(slots=True)
class _Acks:
    """Acknowledged writes so far."""

    #: (agent, key, version) -> value
    storage: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    #: (agent, entry id) -> text
    memory: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (agent, entry id) seen with resident=False
    evicted: set[tuple[str, str]] = field(default_factory=set)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class KernelServer:
    """One ``aios serve`` child process on a data directory."""

    def __init__(self, workdir: Path, cfg: CrashConfig, index: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / f"serve-{index}.toml"
        self.config.write_text(
            "[kernel]\n"
            f"data_dir = {json.dumps(str(workdir / 'data'))}\n"
            f"memory_budget_bytes = {cfg.memory_budget_bytes}\n"
            "audit_file = false\n"
            '[[kernel.backends]]\nname = "sim"\nkind = "sim"\n'
            "[server]\n"
            f"port = {self.port}\n"
            'log_level = "warning"\n'
            "drain_seconds = 1\n"
        )
        self.log = workdir / f"serve-{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float) -> None:
        """Start the process and wait until ``/healthz`` answers."""
        env = {**os.environ, "AIOS_SERVER_ADMIN_TOKEN": TOKEN}
        env.pop("AIOS_CONFIG", None)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aios.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"aios serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        self.kill9()
        raise TimeoutError(f"aios serve did not answer within {timeout} s: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        """SIGKILL the server and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    async def stop(self) -> None:
        """SIGTERM (graceful drain), SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(300):
            if self.proc.poll() is not None:
                return
            await asyncio.sleep(0.05)
        self.kill9()


class _Client:
    """Syscalls over HTTP as one agent; ``call`` returns the decoded result or raises."""

    def __init__(self, http: httpx.AsyncClient, url: str, agent: str):
        self.http = http
        self.url = url
        self.headers = {"authorization": f"Bearer {TOKEN}", "x-aios-agent": agent}

    async def call(self, kind: str, op: str, **args: Any) -> Any:
        r = await self.http.post(
            f"{self.url}/v1/syscalls/{kind}/{op}", json={"args": args, "timeout": 20}, headers=self.headers
        )
        if r.status_code != 200:
            raise RuntimeError(f"{kind}.{op}: HTTP {r.status_code}: {r.text[:300]}")
        return decode(r.json()["result"], rebuild=False)


def _value(rng: random.Random, agent: str, rnd: int, n: int) -> str:
    # Sizes from a few bytes to ~12 KB, so a kill often lands inside a larger transaction.
    return f"{agent}:{rnd}:{n}:" + "".join(
        rng.choices("abcdef0123456789", k=rng.choice([0, 10, 200, 3000, 12000]))
    )


def _text(rng: random.Random) -> str:
    # Distinct random words: little shared prefix, so each entry costs about its length.
    return " ".join("".join(rng.choices("bcdfghjklmnpqrstvwxz", k=6)) for _ in range(40))


async def _writer(
    client: _Client,
    agent: str,
    rng: random.Random,
    rnd: int,
    acks: _Acks,
    stop: asyncio.Event,
    report: CrashReport,
) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        report.attempts += 1
        try:
            if rng.random() < 0.6:
                key = f"k{rng.randrange(12)}"
                value = _value(rng, agent, rnd, n)
                version = await client.call("storage", "write", key=key, value=value)
                acks.storage[(agent, key, int(version))] = value.encode()
            else:
                text = _text(rng)
                entry_id = await client.call("memory", "add", text=text)
                acks.memory[(agent, str(entry_id))] = text
                if rng.random() < 0.5:
                    for e in await client.call("memory", "recent", n=1000):
                        if not e["resident"]:
                            acks.evicted.add((agent, e["id"]))
        except (httpx.HTTPError, RuntimeError):
            report.killed_in_flight += 1
            await asyncio.sleep(0.01)  # the server is gone: the round is ending


async def _verify(
    url: str, acks: _Acks, report: CrashReport, *, only: set[tuple[str, str, int]] | None
) -> None:
    """Read back what was acknowledged (``only``: just these storage writes) through a fresh server."""
    found, lost = 0, []
    async with httpx.AsyncClient(timeout=30) as http:
        for (agent, key, version), value in sorted(acks.storage.items()):
            if only is not None and (agent, key, version) not in only:
                continue
            try:
                got = await _Client(http, url, agent).call("storage", "read", key=key, version=version)
            except RuntimeError:
                got = None
            if got == value:
                found += 1
            else:
                lost.append(f"{agent}/{key}@{version}")
        for agent in sorted({a for a, _, _ in acks.storage}):
            await _Client(http, url, agent).call("storage", "list")
        if only is None:
            report.storage_found = found
            report.storage_lost = lost
            await _verify_memory(http, url, acks, report)
        elif lost:
            report.storage_lost.extend(lost)


async def _verify_memory(http: httpx.AsyncClient, url: str, acks: _Acks, report: CrashReport) -> None:
    stored_ids: set[tuple[str, str]] = set()
    for agent in sorted({a for a, _ in acks.memory}):
        keys = await _Client(http, url, agent).call("storage", "list", prefix=STORE_PREFIX)
        stored_ids |= {(agent, k[len(STORE_PREFIX) :]) for k in keys}
    found, retrievable, lost, wrong = 0, 0, [], []
    for agent, entry_id in sorted(stored_ids | acks.evicted):
        client = _Client(http, url, agent)
        text = acks.memory.get((agent, entry_id))
        try:
            stored = json.loads(await client.call("storage", "read", key=STORE_PREFIX + entry_id))
        except (RuntimeError, ValueError):
            stored = None
        if isinstance(stored, dict) and text is not None and stored.get("text") == text:
            found += 1
            with contextlib.suppress(RuntimeError):
                entry = await client.call("memory", "get", entry_id=entry_id)
                retrievable += entry.get("text") == text
        elif (agent, entry_id) in acks.evicted:
            lost.append(f"{agent}/{entry_id}")
        elif text is not None:
            wrong.append(f"{agent}/{entry_id}")  # stored, but not what was acknowledged
    report.memory_seen_evicted = len(acks.evicted)
    report.memory_in_storage = found
    report.memory_evicted_lost = lost + wrong
    report.memory_evicted_retrievable = retrievable
    report.memory_not_in_storage = len(set(acks.memory) - stored_ids)


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of the storage file (run while no server has it open)."""
    if not db.exists():
        return "absent"
    conn = sqlite3.connect(db, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


async def run_crash_restart(cfg: CrashConfig, workdir: Path) -> CrashReport:
    """``cfg.rounds`` rounds of write / kill -9 / restart / verify on ``workdir`` (see the module doc)."""
    report = CrashReport()
    acks = _Acks()
    rng = random.Random(cfg.seed)
    started = time.monotonic()
    server = KernelServer(workdir, cfg, 0)
    await server.start(cfg.startup_timeout)
    for rnd in range(cfg.rounds):
        before = set(acks.storage)
        stop = asyncio.Event()
        async with httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=cfg.writers * 2)
        ) as http:
            writers = [
                asyncio.create_task(
                    _writer(
                        _Client(http, server.url, f"agent-{i}"),
                        f"agent-{i}",
                        random.Random(f"{cfg.seed}/{rnd}/{i}"),
                        rnd,
                        acks,
                        stop,
                        report,
                    )
                )
                for i in range(cfg.writers)
            ]
            await asyncio.sleep(rng.uniform(cfg.min_run_s, cfg.max_run_s))
            server.kill9()  # mid-flight: several writers are waiting for answers right now
            report.kills += 1
            stop.set()
            await asyncio.gather(*writers)
        report.integrity.append(integrity(workdir / "data" / "storage.sqlite"))
        server = KernelServer(workdir, cfg, rnd + 1)
        await server.start(cfg.startup_timeout)
        await _verify(server.url, acks, report, only=set(acks.storage) - before)
        report.rounds += 1
    await _verify(server.url, acks, report, only=None)
    await server.stop()
    report.storage_acked = len(acks.storage)
    report.memory_acked = len(acks.memory)
    report.elapsed_s = time.monotonic() - started
    return report
