"""Several processes share one server through the remote SDK; per-agent metrics come out exact."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import httpx
import pytest

from aios.backends.sim import SimBackend
from tests.server.conftest import TOKENS, ServeFactory, auth

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
PROCESSES, AGENTS = 4, 25

# Each process: 25 agents at once, each 2 LLM calls (1..3 tokens) and a storage write and read.
AGENT_PROGRAM = textwrap.dedent(
    """
    import asyncio, json, sys
    from aios import sdk

    proc = int(sys.argv[1])

    async def agent(j):
        name = f"p{proc}-a{j}"
        with sdk.agent(name):
            texts = [(await sdk.llm_chat([{"role": "user", "content": name}], max_tokens=1 + j % 3)).text
                     for _ in range(2)]
            await sdk.syscall("storage", "write", key="me", value=name)
            back = await sdk.syscall("storage", "read", key="me")
            return name, texts, back.decode()

    async def main():
        return await asyncio.gather(*(agent(j) for j in range(int(sys.argv[2]))))

    print(json.dumps(asyncio.run(main())))
    """
)


def test_four_processes_of_25_agents_share_a_server_and_metrics_are_exact_per_agent(serve: ServeFactory):
    tokens = {
        f"tok-proc{i}-0123456789abcdef": {"agent": f"p{i}", "act_as": [f"p{i}-*"]} for i in range(PROCESSES)
    }
    tokens[TOKENS["admin"]] = {"agent": "admin", "groups": ["admin"]}
    srv = serve(backends={"sim": SimBackend(capacity=8, token_time=0.001)}, server={"tokens": tokens})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", AGENT_PROGRAM, str(i), str(AGENTS)],
            env={
                "AIOS_KERNEL_URL": srv.url,
                "AIOS_KERNEL_TOKEN": f"tok-proc{i}-0123456789abcdef",
                "PATH": "",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=100) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    for i, (out, _) in enumerate(outputs):
        for name, texts, back in json.loads(out):
            j = int(name.rsplit("a", 1)[1])
            expected = " ".join(f"t{k}" for k in range(1 + j % 3))
            assert texts == [expected, expected] and back == name and name.startswith(f"p{i}-")

    text = httpx.get(f"{srv.url}/metrics", headers=auth("admin")).text
    samples = {m[1]: float(m[2]) for m in re.finditer(r"^(aios_agent_\S+) (\S+)$", text, re.M)}
    for i in range(PROCESSES):
        for j in range(AGENTS):
            a = f'agent="p{i}-a{j}"'
            assert samples[f'aios_agent_syscalls_total{{{a},kind="llm"}}'] == 2
            assert samples[f'aios_agent_syscalls_total{{{a},kind="storage"}}'] == 2
            assert samples[f'aios_agent_outcomes_total{{{a},status="done"}}'] == 4
            assert samples[f'aios_agent_outcomes_total{{{a},status="failed"}}'] == 0
            assert samples[f'aios_agent_tokens_total{{{a},type="completion"}}'] == 2 * (1 + j % 3)
    agents = {m[1] for m in re.finditer(r'agent="([^"]+)"', text)}
    assert agents == {f"p{i}-a{j}" for i in range(PROCESSES) for j in range(AGENTS)}
    assert f"aios_syscalls_finished_total {PROCESSES * AGENTS * 4}" in text
