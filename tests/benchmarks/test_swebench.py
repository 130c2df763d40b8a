"""SWE-bench: a tiny git repository built here, the patch-applies check, repo tools, predictions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from aios.benchmarks.core import AgentOutput, DataNotFoundError
from aios.benchmarks.swebench import SweBench, docker_available, extract_patch, write_predictions
from aios.benchmarks.swebench.benchmark import PATCH_APPLIES
from aios.benchmarks.swebench.harness import harness_command

GOOD = """diff --git a/calc.py b/calc.py
--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a - b
+    return a + b
"""
STALE = GOOD.replace("return a - b", "return a * b")


def sh(cwd: Path, *args: str) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repos(tmp_path: Path) -> tuple[Path, str]:
    return build_repo(tmp_path)


def build_repo(tmp_path: Path) -> tuple[Path, str]:
    """A clone folder with ``acme__calc`` at a commit whose add() subtracts."""
    repo = tmp_path / "repos" / "acme__calc"
    repo.mkdir(parents=True)
    sh(repo, "git", "init", "-q")
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (repo / "README").write_text("calc: adds numbers\n")
    sh(repo, "git", "add", ".")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    base = sh(repo, "git", "rev-parse", "HEAD")
    (repo / "calc.py").write_text("def add(a, b):\n    return a * b\n")
    sh(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "later")
    return tmp_path / "repos", base


def instances(tmp_path: Path, base: str) -> Path:
    rows: list[dict[str, Any]] = [
        {"instance_id": "acme__calc-1", "repo": "acme/calc", "base_commit": base,
         "problem_statement": "add() subtracts instead of adding", "patch": GOOD, "test_patch": "",
         "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]", "version": "1.0"},
        {"instance_id": "other__lib-2", "repo": "other/lib", "base_commit": "0" * 40,
         "problem_statement": "something else", "patch": "", "test_patch": "",
         "FAIL_TO_PASS": "[]", "PASS_TO_PASS": "[]", "version": "1.0"},
    ]  # fmt: skip
    path = tmp_path / "lite.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def test_a_patch_that_applies_to_the_base_commit_succeeds(tmp_path: Path, repos: tuple[Path, str]):
    folder, base = repos
    bench = SweBench(data=str(instances(tmp_path, base)), repos=str(folder))
    task = bench.load()[0]
    ep = await bench.episode(task)
    good = await bench.score(task, ep, AgentOutput(answer=f"Here is the fix:\n```diff\n{GOOD}```"))
    stale = await bench.score(task, ep, AgentOutput(answer=STALE))
    empty = await bench.score(task, ep, AgentOutput(answer=None))
    assert good.success and good.metrics["patch_applies"] is True and good.metrics["model_patch"] == GOOD
    assert not stale.success and "does not apply" in stale.detail
    assert not empty.success
    # The clone's own working tree and branch were never touched.
    assert (folder / "acme__calc" / "calc.py").read_text() == "def add(a, b):\n    return a * b\n"


async def test_the_agent_can_browse_the_repository_at_the_base_commit(
    tmp_path: Path, repos: tuple[Path, str]
):
    folder, base = repos
    bench = SweBench(data=str(instances(tmp_path, base)), repos=str(folder))
    ep = await bench.episode(bench.load()[0])
    tools = {t.name: t for t in ep.tools}
    assert set(tools) == {"list_files", "read_file", "search"} and "list_files" in ep.prompt
    assert (await tools["list_files"].call({"prefix": ""})).value == ["README", "calc.py"]
    assert (
        await tools["read_file"].call({"path": "calc.py"})
    ).value == "1: def add(a, b):\n2:     return a - b"
    assert (await tools["search"].call({"text": "return"})).value == ["calc.py:2:    return a - b"]
    outside = await tools["read_file"].call({"path": "../../etc/passwd"})
    assert not outside.ok
    assert ep.self_check is not None
    assert (await ep.self_check(GOOD))[0] and not (await ep.self_check(STALE))[0]


async def test_without_a_clone_the_patch_is_unchecked_and_not_a_success(
    tmp_path: Path, repos: tuple[Path, str]
):
    folder, base = repos
    bench = SweBench(data=str(instances(tmp_path, base)), repos=str(folder))
    task = bench.load()[1]
    ep = await bench.episode(task)
    score = await bench.score(task, ep, AgentOutput(answer=GOOD))
    assert ep.tools == [] and "not available" in ep.prompt
    assert not score.success and score.metrics["checked"] is False


def test_patches_are_extracted_from_prose_and_fences():
    assert extract_patch("I propose:\n" + GOOD) == GOOD
    assert extract_patch("```\n" + GOOD + "```\nthanks") == GOOD
    assert extract_patch(None) == ""


def test_predictions_are_written_in_the_official_format(tmp_path: Path):
    records = [{"task_id": "a-1", "metrics": {"model_patch": GOOD}}, {"task_id": "b-2", "metrics": {}}]
    path = write_predictions(tmp_path / "predictions.jsonl", records, "aios-react")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [
        {"instance_id": "a-1", "model_name_or_path": "aios-react", "model_patch": GOOD},
        {"instance_id": "b-2", "model_name_or_path": "aios-react", "model_patch": ""},
    ]
    cmd = harness_command("princeton-nlp/SWE-bench_Lite", path, "r1")
    assert cmd[1:3] == ["-m", "swebench.harness.run_evaluation"] and "--predictions_path" in cmd


async def test_without_docker_the_run_is_labelled_patch_applies_never_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    async def no_docker() -> tuple[bool, str]:
        return False, "no Docker engine is running"

    monkeypatch.setattr("aios.benchmarks.swebench.benchmark.docker_available", no_docker)
    bench = SweBench()
    records = [{"task_id": "a-1", "success": True, "metrics": {"model_patch": GOOD, "patch_applies": True}}]
    extra = await bench.finalize(tmp_path, records, "m")
    assert extra["grading"].startswith(PATCH_APPLIES) and "resolved" not in extra
    assert (tmp_path / "predictions.jsonl").is_file()
    assert bench.summarize(records) == {PATCH_APPLIES: 1.0}


async def test_docker_counts_only_with_the_harness_installed_and_an_engine_answering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    assert await docker_available() == (False, "the swebench package is not installed (pip install swebench)")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    for code, expected in ((1, (False, "no Docker engine is running")), (0, (True, "docker engine answers"))):
        fake = tmp_path / f"docker{code}"
        fake.write_text(f"#!/bin/sh\nexit {code}\n")
        fake.chmod(0o755)
        monkeypatch.setattr("shutil.which", lambda name, fake=fake: str(fake))
        assert await docker_available() == expected


def test_missing_local_data_says_how_to_obtain_it(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match="SWE-bench Lite"):
        SweBench().load(str(tmp_path / "missing.jsonl"))


#: A stand-in for the official harness: reads the predictions it is given, "resolves" the ones that
#: fix the real bug (``a - b``), and writes its report where and how ``run_evaluation`` does.
FAKE_HARNESS = """
import argparse, json, pathlib
p = argparse.ArgumentParser()
for flag in ("--dataset_name", "--predictions_path", "--max_workers", "--run_id"):
    p.add_argument(flag, required=True)
a = p.parse_args()
preds = [json.loads(line) for line in pathlib.Path(a.predictions_path).read_text().splitlines()]
assert a.dataset_name == "princeton-nlp/SWE-bench_Lite", a.dataset_name
ok = [x["instance_id"] for x in preds if "-    return a - b" in x["model_patch"]]
model = preds[0]["model_name_or_path"].replace("/", "__")
pathlib.Path(f"{model}.{a.run_id}.json").write_text(json.dumps({"resolved_ids": ok}))
"""


async def test_with_docker_the_official_harness_grades_the_predictions_as_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pkg = tmp_path / "site" / "swebench" / "harness"
    pkg.mkdir(parents=True)
    (pkg.parent / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "run_evaluation.py").write_text(FAKE_HARNESS)
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\nexit 0\n")
    docker.chmod(0o755)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("PATH", f"{docker.parent}:{os.environ['PATH']}")
    records = [
        {"task_id": "calc-1", "success": True, "metrics": {"model_patch": GOOD, "patch_applies": True}},
        {"task_id": "calc-2", "success": True, "metrics": {"model_patch": STALE, "patch_applies": True}},
        {"task_id": "calc-3", "success": False, "metrics": {"model_patch": None, "patch_applies": False}},
    ]
    out = tmp_path / "run"
    out.mkdir()
    extra = await SweBench().finalize(out, records, "org/model")
    assert extra["grading"] == "resolved (official SWE-bench harness)", (out / "harness.log").read_text()
    assert extra["resolved_ids"] == ["calc-1"] and extra["resolved"] == pytest.approx(1 / 3)
    sent = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["model_patch"] for p in sent] == [GOOD, STALE, ""]
    assert {p["model_name_or_path"] for p in sent} == {"org/model"}


async def test_a_harness_that_writes_no_report_is_never_reported_as_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    async def docker_up() -> tuple[bool, str]:
        return True, "docker engine answers"

    monkeypatch.setattr("aios.benchmarks.swebench.benchmark.docker_available", docker_up)
    monkeypatch.setattr(
        "aios.benchmarks.swebench.harness.harness_command",
        lambda *a, **k: ["/bin/sh", "-c", "echo 'harness crashed' >&2; exit 1"],
    )
    records = [{"task_id": "a-1", "success": True, "metrics": {"model_patch": GOOD, "patch_applies": True}}]
    extra = await SweBench().finalize(tmp_path, records, "m")
    assert extra["grading"] == f"{PATCH_APPLIES}: the official harness produced no report"
    assert "resolved" not in extra and "harness crashed" in (tmp_path / "harness.log").read_text()
