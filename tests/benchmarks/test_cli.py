"""``aios-bench run``: a managed vLLM stand-in end to end, resume through the CLI, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aios.benchmarks.cli import main
from aios.benchmarks.results import RunDir
from aios.benchmarks.vllm_server import ManagedVLLM
from aios.errors import BackendError, ConfigError

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
ROWS = [
    {"task_id": f"Toy/{i}", "prompt": PROMPT.replace("add", f"add{i}"), "entry_point": f"add{i}",
     "test": TEST, "canonical_solution": ""}
    for i in range(2)
]  # fmt: skip


@pytest.fixture
def fake_vllm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An executable standing in for ``vllm`` and the file it records into."""
    exe = tmp_path / "vllm"
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).with_name("fake_vllm.py")} "$@"\n')
    exe.chmod(0o755)
    rec = tmp_path / "record.jsonl"
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(rec))
    # The body works for any addN: the stand-in answers every task with it.
    monkeypatch.setenv("FAKE_VLLM_ANSWER", "    return a + b")
    return exe, rec


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.mark.parametrize("mode", [[], ["--no-kernel"]])
def test_a_run_against_a_managed_vllm_server_end_to_end(
    tmp_path: Path, fake_vllm: tuple[Path, Path], mode: list[str], capsys: pytest.CaptureFixture[str]
):
    exe, rec = fake_vllm
    out = tmp_path / "run"
    data = str(data_file(tmp_path))
    argv = ["run", "humaneval", "--framework", "react", "--data", data, "--vllm", "org/model",
            "--vllm-exe", str(exe), "--output", str(out), *mode]  # fmt: skip
    assert main(argv) == 0
    assert "humaneval / react" in capsys.readouterr().out
    seen = records(rec)
    argv_seen = seen[0]["argv"]
    assert argv_seen[:2] == ["serve", "org/model"]
    assert "--enable-prefix-caching" in argv_seen and argv_seen[-2:] == ["--scheduling-policy", "priority"]
    assert seen[-1] == {"stopped": 15}  # stopped with SIGTERM once the run was over
    requests = [e["request"] for e in seen if "request" in e]
    assert len(requests) == 4 and all(r["model"] == "org/model" and "priority" in r for r in requests)
    results = RunDir(out).records()
    assert [r["success"] for r in results] == [True, True]
    meta = RunDir(out).read_meta()
    assert meta["summary"] == {"pass@1": 1.0} and meta["kernel"] is (mode == [])
    assert meta["vllm"]["command"][-2:] == ["--scheduling-policy", "priority"]


def test_rerunning_needs_resume_and_resume_redoes_nothing(
    tmp_path: Path, fake_vllm: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
):
    exe, rec = fake_vllm
    out = tmp_path / "run"
    argv = ["run", "humaneval", "--framework", "react", "--data", str(data_file(tmp_path)), "--vllm", "m",
            "--vllm-exe", str(exe), "--output", str(out), "--limit", "1"]  # fmt: skip
    assert main(argv) == 0
    assert main(argv) == 2 and "--resume" in capsys.readouterr().err
    before = len([e for e in records(rec) if "request" in e])
    assert main([*argv[:-2], "--resume"]) == 0  # now both tasks: only Toy/1 is new
    after = len([e for e in records(rec) if "request" in e])
    assert after - before == 2  # one task: a thought and an action
    assert [r["task_id"] for r in RunDir(out).records()] == ["Toy/0", "Toy/1"]


def test_sigterm_stops_the_run_and_its_server_and_the_run_resumes(
    tmp_path: Path, fake_vllm: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
):
    exe, rec = fake_vllm
    out = tmp_path / "run"
    argv = ["run", "humaneval", "--framework", "react", "--data", str(data_file(tmp_path)), "--vllm", "m",
            "--vllm-exe", str(exe), "--output", str(out)]  # fmt: skip
    env = {**os.environ, "FAKE_VLLM_DELAY": "0.3"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aios.benchmarks.cli", *argv], env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not RunDir(out).records():
        time.sleep(0.1)  # polling a child process: there is no event to wait on
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"rerun with --resume" in err
    assert records(rec)[-1] == {"stopped": 15}  # the server went down with the run
    assert [r["task_id"] for r in RunDir(out).records()] == ["Toy/0"]
    assert main([*argv, "--resume"]) == 0
    assert [r["task_id"] for r in RunDir(out).records()] == ["Toy/0", "Toy/1"]


async def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path: Path):
    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\necho 'CUDA out of memory'\nexit 3\n")
    exe.chmod(0o755)
    server = ManagedVLLM("m", exe=str(exe), log_path=tmp_path / "vllm.log", poll_s=0.05)
    with pytest.raises(BackendError, match="exited with code 3") as err:
        await server.start()
    assert "CUDA out of memory" in str(err.value)


def test_a_missing_vllm_is_a_clear_error():
    with pytest.raises(ConfigError, match="pip install vllm"):
        ManagedVLLM("m", exe="definitely-not-vllm").command()


def test_unknown_benchmark_and_missing_data_fail_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    assert main(["run", "nope", "--framework", "react"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert main(["run", "humaneval", "--framework", "metagpt", "--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err  # which of the two depends on whether metagpt is installed here
    assert "not available in this environment" in err or "agent factory is not written yet" in err
    monkeypatch.delenv("AIOS_GAIA_DATA", raising=False)
    assert main(["run", "gaia", "--framework", "react", "--output", str(tmp_path / "g")]) == 2
    assert "GAIA is gated" in capsys.readouterr().err
