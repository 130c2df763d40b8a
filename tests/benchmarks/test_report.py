"""``aios-bench report``: the paper-style table from self-written runs in each benchmark's schema."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from aios.benchmarks.cli import main
from aios.benchmarks.report import build, csv_text, load_runs, markdown
from aios.errors import ConfigError


def write_run(
    root: Path, name: str, bench: str, fw: str, kernel: bool, results: list[dict[str, Any]], **meta: Any
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    info = {"benchmark": bench, "framework": fw, "kernel": kernel, "model": "m", "wall_s": 12.0}
    (d / "run.json").write_text(json.dumps({**info, "finished_at": 1.0, **meta}))
    (d / "results.jsonl").write_text("".join(json.dumps({"status": "done", **r}) + "\n" for r in results))
    return d


def he(task: str, ok: bool) -> dict[str, Any]:
    return {"task_id": task, "success": ok, "metrics": {"passed": ok}}


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    write_run(
        tmp_path,
        "he-direct",
        "humaneval",
        "react",
        False,
        [he("HumanEval/0", False), he("HumanEval/1", True)],
    )
    write_run(
        tmp_path, "he-kernel", "humaneval", "react", True, [he("HumanEval/0", True), he("HumanEval/1", True)]
    )
    mint = [
        {
            "task_id": "humaneval/HumanEval/0",
            "group": "humaneval",
            "success": True,
            "metrics": {"solved_at": 2},
        },
        {"task_id": "mbpp/16", "group": "mbpp", "success": False, "metrics": {"solved_at": None}},
        {"task_id": "mbpp/22", "group": "mbpp", "success": False, "metrics": {"solved_at": None}},
    ]
    write_run(tmp_path, "mint-direct", "mint", "reflexion", False, mint[:2])
    write_run(tmp_path, "mint-kernel", "mint", "reflexion", True, mint)
    gaia = [{"task_id": "t-1", "group": "level 1", "success": True, "metrics": {"final_answer": "8"}}]
    write_run(tmp_path, "gaia-kernel", "gaia", "react", True, gaia)
    swe = [
        {"task_id": "acme__calc-1", "success": True, "metrics": {"patch_applies": True, "model_patch": "x"}}
    ]
    write_run(
        tmp_path,
        "swe-direct",
        "swebench",
        "react",
        False,
        swe,
        grading="patch applies (not resolved): no docker",
    )
    return tmp_path


def test_the_table_pairs_runs_without_and_with_the_kernel(runs: Path):
    rows = build(load_runs([runs]))
    text = markdown(rows)
    header = text.splitlines()[0]
    assert "humaneval pass@1 w/o AIOS" in header and "mint success rate (5 turns) w/o AIOS" in header
    assert "swebench patch applies (not resolved) w/o AIOS" in header and "resolved w/" not in header
    react = next(line for line in text.splitlines() if line.startswith("| react |"))
    assert "50.0 (n=2) | 100.0 (n=2) | +50.0 (n=2)" in react
    reflexion = next(line for line in text.splitlines() if line.startswith("| reflexion |"))
    # MINT: 1/2 without, 1/3 with; the delta is taken on the two tasks both runs did.
    assert "50.0 (n=2) | 33.3 (n=3) | +0.0 (n=2)" in reflexion
    assert "patch applies (not resolved): no docker" in text


def test_the_csv_has_one_line_per_run_and_per_delta(runs: Path):
    rows = list(csv.DictReader(io.StringIO(csv_text(build(load_runs([runs]))))))
    he = [r for r in rows if r["benchmark"] == "humaneval"]
    assert [(r["kernel"], r["metric"], float(r["value"])) for r in he] == [
        ("without", "pass@1", 0.0 + 0.5),
        ("with", "pass@1", 1.0),
        ("delta", "pass@1", 0.5),
    ]
    assert {r["benchmark"] for r in rows} == {"humaneval", "mint", "gaia", "swebench"}


def test_the_cli_prints_the_table_and_writes_files(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out_csv, out_md = tmp_path / "t.csv", tmp_path / "t.md"
    assert main(["report", str(runs / "he-direct"), str(runs / "he-kernel"), "--csv", str(out_csv),
                 "--markdown", str(out_md)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| react | 50.0 (n=2) | 100.0 (n=2) | +50.0 (n=2) |" in printed
    assert out_md.read_text() == printed and out_csv.read_text().startswith("benchmark,framework,kernel")


def test_no_runs_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="no run directories"):
        load_runs([tmp_path])
