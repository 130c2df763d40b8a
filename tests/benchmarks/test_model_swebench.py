"""SWE-bench on the real embedded model (a repository built here): ReAct with kernel, Reflexion without."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.benchmarks.swebench import SweBench
from aios.benchmarks.swebench.benchmark import PATCH_APPLIES
from tests.benchmarks.model_runs import check_record, tiny_run
from tests.benchmarks.test_swebench import build_repo, instances

pytestmark = pytest.mark.model


@pytest.mark.parametrize(("framework", "kernel"), [("react", True), ("reflexion", False)])
async def test_a_swebench_instance_runs_and_is_labelled_patch_applies(
    tmp_path: Path, framework: str, kernel: bool
):
    folder, base = build_repo(tmp_path)
    bench = SweBench(data=str(instances(tmp_path, base)), repos=str(folder))
    meta, records = await tiny_run(bench, framework, kernel=kernel, out=tmp_path / "run")
    rec = records[0]
    check_record(rec, {"list_files", "read_file", "search"}, framework)
    assert rec["metrics"]["checked"] is True and isinstance(rec["metrics"]["patch_applies"], bool)
    assert list(meta["summary"]) == [PATCH_APPLIES] and meta["grading"].startswith(PATCH_APPLIES)
    assert (tmp_path / "run" / "predictions.jsonl").is_file()
