"""GAIA: the official scoring rules on their edge cases, answer extraction, a self-written snapshot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from aios.benchmarks.core import AgentOutput, DataNotFoundError
from aios.benchmarks.gaia import Gaia, extract_final_answer, question_scorer
from aios.benchmarks.gaia.scorer import normalize_number_str, normalize_str

ROWS: list[dict[str, Any]] = [
    {"task_id": "t-1", "Question": "How many legs has a spider?", "Level": 1, "Final answer": "8",
     "file_name": "", "Annotator Metadata": {"Steps": "count"}},
    {"task_id": "t-2", "Question": "Which fruits are in the file?", "Level": 2, "Final answer": "apple, pear",
     "file_name": "fruits.txt", "Annotator Metadata": {"Steps": "read"}},
    {"task_id": "t-3", "Question": "Name the bird.", "Level": 3, "Final answer": "sea gull", "file_name": "",
     "Annotator Metadata": {}},
    {"task_id": "t-hidden", "Question": "test split", "Level": 1, "Final answer": "?", "file_name": ""},
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "truth", "expected"),
    [
        ("8", "8", True),
        ("8.0", "8", True),
        ("$1,000", "1000", True),  # $ and , removed before float()
        ("50%", "50", True),
        ("1000 dollars", "1000", False),  # not a number: scores as inf
        ("eight", "8", False),
        ("1_000", "1000", True),  # float() accepts underscores: the official rule does too
        ("nan", "nan", False),  # nan never equals itself
        ("Sea Gull", "seagull", True),  # strings: whitespace and case ignored
        ("sea-gull!", "sea gull", True),  # ... and punctuation
        ("apple, pear", "apple,pear", True),
        ("Apple; Pear", "apple,pear", True),  # either separator splits
        ("pear, apple", "apple, pear", False),  # order matters
        ("apple, pear, fig", "apple, pear", False),  # lengths must match
        ("a.b, c", "ab, c", False),  # list elements keep punctuation
        ("1, 2.0", "1, 2", True),  # numeric list elements compare as numbers
        ("$1,000, 2", "1000, 2", False),  # every comma splits: three elements against two
        (None, "None", True),  # no answer is the string "None"
        (None, "8", False),
        ("", "", True),
    ],
)
def test_the_official_rules_on_their_edge_cases(answer: str | None, truth: str, expected: bool):
    assert question_scorer(answer, truth) is expected


def test_normalizers_match_the_official_ones():
    assert normalize_number_str("$1,234.5%") == 1234.5 and normalize_number_str("x") == float("inf")
    assert normalize_str(" Hello, World! ") == "helloworld"
    assert normalize_str(" Hello, World! ", remove_punct=False) == "hello,world!"


@pytest.mark.parametrize(
    ("text", "final"),
    [
        ("I counted.\nFINAL ANSWER: 8", "8"),
        ("final answer: Paris.", "Paris"),
        ("FINAL ANSWER: draft\nFINAL ANSWER: 3.5", "3.5"),
        ("FINAL ANSWER: 42.", "42."),
        ("just 7", "just 7"),
        (None, None),
    ],
)
def test_the_final_answer_is_what_follows_the_last_marker(text: str | None, final: str | None):
    assert extract_final_answer(text) == final


def write_snapshot(root: Path, fmt: str) -> Path:
    folder = root / "2023" / "validation"
    folder.mkdir(parents=True)
    (folder / "fruits.txt").write_text("apple\npear\n")
    if fmt == "jsonl":
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [{**r, "Annotator Metadata": json.dumps(r.get("Annotator Metadata", {}))} for r in ROWS]
        pq.write_table(pa.Table.from_pylist(rows), folder / "metadata.parquet")
    return root


@pytest.mark.parametrize(
    "fmt",
    [
        "jsonl",
        pytest.param(
            "parquet",
            marks=pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow missing"),
        ),
    ],
)
def test_a_local_snapshot_loads_with_levels_and_without_hidden_answers(tmp_path: Path, fmt: str):
    root = write_snapshot(tmp_path, fmt)
    tasks = Gaia().load(str(root))
    assert [t.id for t in tasks] == ["t-1", "t-2", "t-3"]
    assert [t.group for t in tasks] == ["level 1", "level 2", "level 3"]
    assert tasks[1].data["file"] == str(root / "2023" / "validation" / "fruits.txt")
    assert [t.id for t in Gaia().load(str(root / "2023" / "validation"))] == ["t-1", "t-2", "t-3"]


def test_no_snapshot_says_how_to_obtain_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("AIOS_GAIA_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="gated") as err:
        Gaia().load()
    assert err.value.field == "data"
    with pytest.raises(DataNotFoundError, match="no GAIA metadata"):
        Gaia().load(str(tmp_path))


async def test_the_attachment_is_offered_as_a_file_and_the_answer_scored(tmp_path: Path):
    bench = Gaia()
    task = bench.load(str(write_snapshot(tmp_path, "jsonl")))[1]
    ep = await bench.episode(task)
    try:
        assert "Attached file: fruits.txt" in ep.prompt and "FINAL ANSWER" in ep.prompt
        assert ep.workdir is not None and (ep.workdir / "fruits.txt").read_text() == "apple\npear\n"
        tools = {t.name: t for t in ep.tools}
        read = await tools["read_file"].call({"name": "fruits.txt"})
        assert read.value == "apple\npear\n"
        escape = await tools["read_file"].call({"name": "../../etc/passwd"})
        assert not escape.ok
        ran = await tools["python"].call({"code": "print(open('fruits.txt').read().split())"})
        assert ran.value["output"] == "['apple', 'pear']"
        right = await bench.score(task, ep, AgentOutput(answer="It lists two.\nFINAL ANSWER: Apple, Pear"))
        wrong = await bench.score(task, ep, AgentOutput(answer="FINAL ANSWER: pear, apple"))
    finally:
        ep.close()
    assert right.success and right.metrics["final_answer"] == "Apple, Pear"
    assert not wrong.success
    assert not ep.workdir.exists()


def test_summary_is_per_level():
    records = [
        {"success": True, "group": "level 1"},
        {"success": False, "group": "level 1"},
        {"success": True, "group": "level 3"},
    ]
    assert Gaia().summarize(records) == {"exact match": pytest.approx(2 / 3), "level 1": 0.5, "level 3": 1.0}
