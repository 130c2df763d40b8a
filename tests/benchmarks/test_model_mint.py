"""MINT on the real embedded model and the real data (ReAct with the kernel).

MINT's prompt is long (template and in-context example): on a loaded 2-core machine one real
ReAct run takes ~30 s, so Reflexion and the no-kernel mode are exercised by the other model tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.benchmarks.mint import Mint
from tests.benchmarks.model_runs import check_record, tiny_run
from tests.benchmarks.test_mint import DATA, needs_data

pytestmark = [pytest.mark.model, needs_data]


async def test_a_mint_task_runs_under_mints_protocol(tmp_path: Path):
    meta, records = await tiny_run(Mint(data=str(DATA)), "react", kernel=True, out=tmp_path)
    rec = records[0]
    check_record(rec, {"execute"}, "react")
    assert rec["task_id"] == "humaneval/HumanEval/0"
    # Every action the agent took was counted by the environment (an invalid call is not an action).
    valid = [s for s in rec["steps"] if s["action"] in ("execute", "finish") and s["error"] != "BadArguments"]
    assert rec["metrics"]["actions"] == len(valid) <= 5
    assert "success@5" in meta["summary"]
