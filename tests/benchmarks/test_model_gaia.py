"""GAIA on the real embedded model (a self-written snapshot): ReAct with the kernel, Reflexion without."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.benchmarks.gaia import Gaia
from tests.benchmarks.model_runs import check_record, tiny_run
from tests.benchmarks.test_gaia import write_snapshot

pytestmark = pytest.mark.model


@pytest.mark.parametrize(("framework", "kernel"), [("react", True), ("reflexion", False)])
async def test_a_gaia_question_with_an_attachment_runs_end_to_end(
    tmp_path: Path, framework: str, kernel: bool
):
    snapshot = write_snapshot(tmp_path / "gaia", "jsonl")
    meta, records = await tiny_run(
        Gaia(data=str(snapshot)), framework, kernel=kernel, out=tmp_path / "run", tasks=["t-2"], limit=None
    )
    rec = records[0]
    check_record(rec, {"python", "read_file"}, framework)
    assert rec["group"] == "level 2" and "final_answer" in rec["metrics"]
    assert set(meta["summary"]) >= {"exact match", "level 2"}
