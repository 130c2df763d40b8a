"""SWE-bench Lite: the agent reads an issue (and the repository at its base commit) and writes a patch.

Data: a local ``.jsonl``/``.parquet`` of instances (``--data`` or ``$AIOS_SWEBENCH_DATA``) or a
hub id (default ``princeton-nlp/SWE-bench_Lite``, split ``test``; needs the ``datasets``
package and network). Local clones (``--repos DIR`` or ``$AIOS_SWEBENCH_REPOS``; a clone of
``owner/name`` is ``DIR/owner__name`` or ``DIR/name``) give the agent read-only tools on the
repository at the base commit and let the harness check that a patch applies.

Grading: with the official harness and a Docker engine (``harness.docker_available``) the run's
predictions are graded "resolved" at the end; otherwise a task succeeds when its patch applies
cleanly to the base commit, and the metric says exactly that: "patch applies (not resolved)".
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aios.managers.tools import Tool

from ..core import JSON, AgentDefaults, AgentOutput, DataNotFoundError, Episode, Score, Task, strip_fences
from ..gaia.benchmark import read_rows
from .git import RepoAtCommit
from .harness import PREDICTIONS, docker_available, run_harness, write_predictions

ENV_DATA = "AIOS_SWEBENCH_DATA"
ENV_REPOS = "AIOS_SWEBENCH_REPOS"
HUB_ID = "princeton-nlp/SWE-bench_Lite"
PATCH_APPLIES = "patch applies (not resolved)"
REQUIRED = ("instance_id", "repo", "base_commit", "problem_statement")
HOW_TO_GET = (
    f"pass --data with a local SWE-bench Lite .jsonl/.parquet (or set {ENV_DATA}), or a hub id such as "
    f"{HUB_ID} with the datasets package installed and network access"
)

_PROMPT = """You will fix an issue in the repository {repo} (at commit {commit}).

Issue:
{issue}

Write a patch in unified diff format (as produced by `git diff`, with --- a/ and +++ b/ paths) \
that resolves the issue, and give the patch as the answer of finish.{tools_note}"""


def _load_rows(where: str) -> list[dict[str, Any]]:
    path = Path(where)
    if path.is_file():
        return read_rows(path)
    if path.exists() or where.startswith((".", "/")):
        raise DataNotFoundError(
            f"SWE-bench data {where!r} is not a .jsonl/.parquet file: {HOW_TO_GET}", field="data"
        )
    try:
        import datasets  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise DataNotFoundError(
            f"{where!r} is not a local file and 'datasets' is not installed: {HOW_TO_GET}", field="data"
        ) from None
    try:
        rows: list[dict[str, Any]] = list(datasets.load_dataset(where, split="test"))
    except Exception as exc:  # network, missing dataset: all mean "no data here"
        raise DataNotFoundError(f"could not load {where!r} ({exc}): {HOW_TO_GET}", field="data") from None
    return rows


def extract_patch(answer: str | None) -> str:
    """The diff in an answer: a fenced block if any, from its first ``diff --git``/``---`` line."""
    text = strip_fences(answer or "")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("diff --git", "--- ")):
            return "\n".join(lines[i:]).rstrip("\n") + "\n"
    return text.strip() + ("\n" if text.strip() else "")


class SweBench:
    """SWE-bench Lite (loader, prompt protocol, patch-applies scorer, official-harness grading)."""

    name = "swebench"
    metric = PATCH_APPLIES
    defaults = AgentDefaults(max_steps=8, thought_tokens=64, action_tokens=512)

    def __init__(self, *, data: str | None = None, repos: str | None = None, runner: object | None = None):
        self.data = data
        self.repos = (
            Path(repos) if repos else (Path(os.environ[ENV_REPOS]) if os.environ.get(ENV_REPOS) else None)
        )

    def load(self, source: str | None = None) -> list[Task]:
        """The instances of the file or hub dataset."""
        where = source or self.data or os.environ.get(ENV_DATA) or HUB_ID
        tasks = []
        for i, row in enumerate(_load_rows(where)):
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise DataNotFoundError(f"SWE-bench row {i} lacks {missing}", field="data")
            data = {k: row[k] for k in row if isinstance(row[k], str | int | float | bool | type(None))}
            tasks.append(Task(id=str(row["instance_id"]), data=data, group=str(row["repo"])))
        self.dataset = where
        return tasks

    def checkout(self, task: Task) -> RepoAtCommit | None:
        """The local clone of the task's repository at its base commit, if there is one."""
        if self.repos is None:
            return None
        repo = str(task.data["repo"])
        for name in (repo.replace("/", "__"), repo.split("/")[-1]):
            if (self.repos / name / ".git").exists() or (self.repos / name / "HEAD").is_file():
                return RepoAtCommit(self.repos / name, str(task.data["base_commit"]))
        return None

    async def episode(self, task: Task) -> Episode:
        """The issue, read-only repository tools when a clone is here, and the applies self-check."""
        repo = self.checkout(task)
        if repo is not None and not await repo.has_commit():
            repo = None
        tools = _repo_tools(repo) if repo is not None else []
        note = (
            "\nYou can explore the repository with list_files, read_file and search."
            if tools
            else "\nThe repository is not available to browse; write the patch from the issue."
        )
        prompt = _PROMPT.format(
            repo=task.data["repo"],
            commit=task.data["base_commit"],
            issue=task.data["problem_statement"],
            tools_note=note,
        )

        async def self_check(answer: str | None) -> tuple[bool, str]:
            patch = extract_patch(answer)
            if repo is None:
                return bool(patch.strip()), "a patch was given" if patch.strip() else "no patch was given"
            ok, why = await repo.patch_applies(patch)
            return ok, "the patch applies" if ok else f"the patch does not apply: {why[:300]}"

        return Episode(
            prompt=prompt, tools=tools, max_steps=self.defaults.max_steps, self_check=self_check, state=repo
        )

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """Does the patch apply to the base commit? (Resolution is graded later, by the official harness.)"""
        patch = extract_patch(output.answer)
        repo = episode.state if isinstance(episode.state, RepoAtCommit) else self.checkout(task)
        metrics: dict[str, JSON] = {"model_patch": patch, "grading": "patch-applies"}
        if repo is None:
            metrics.update(patch_applies=None, checked=False)
            return Score(False, metrics, "no local clone of the repository: the patch was not checked")
        ok, why = await repo.patch_applies(patch)
        metrics.update(patch_applies=ok, checked=True)
        return Score(ok, metrics, "patch applies" if ok else f"patch does not apply: {why[:500]}")

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """Patch-applies rate (labelled so); "resolved" only when the official harness graded."""
        n = len(records) or 1
        applies = sum(bool((r.get("metrics") or {}).get("patch_applies")) for r in records) / n
        graded = [r for r in records if (r.get("metrics") or {}).get("resolved") is not None]
        if records and len(graded) == len(records):
            return {
                "resolved": sum(bool(r["metrics"]["resolved"]) for r in graded) / n,
                "patch applies": applies,
            }
        return {PATCH_APPLIES: applies}

    async def finalize(
        self, directory: Path, records: Sequence[Mapping[str, JSON]], model: str
    ) -> dict[str, Any]:
        """Write predictions.jsonl; grade with the official harness when Docker is available."""
        predictions = write_predictions(directory / PREDICTIONS, records, model or "aios")
        ok, why = await docker_available()
        if not ok:
            return {
                "grading": f"{PATCH_APPLIES}: official harness not run ({why})",
                "predictions": str(predictions),
            }
        resolved = await run_harness(
            getattr(self, "dataset", HUB_ID), predictions, f"aios-{int(time.time())}", cwd=directory
        )
        if resolved is None:
            return {
                "grading": f"{PATCH_APPLIES}: the official harness produced no report",
                "predictions": str(predictions),
            }
        ids = [str(r["task_id"]) for r in records]
        return {
            "grading": "resolved (official SWE-bench harness)",
            "predictions": str(predictions),
            "resolved": sum(i in resolved for i in ids) / (len(ids) or 1),
            "resolved_ids": sorted(resolved),
        }


def _repo_tools(repo: RepoAtCommit) -> list[Tool]:
    async def list_files(prefix: str = "") -> list[str]:
        """List the repository's files whose path starts with prefix.

        Args:
            prefix: A directory or path prefix, e.g. "src/pkg/"; empty lists everything.
        """
        return await repo.list_files(prefix)

    async def read_file(path: str, start_line: int = 1, end_line: int = 200) -> str:
        """Read lines of a file of the repository, numbered.

        Args:
            path: The file's path in the repository.
            start_line: The first line to show (1-based).
            end_line: The last line to show.
        """
        return await repo.read_file(path, start_line, end_line)

    async def search(text: str) -> list[str]:
        """Find lines of the repository containing text (exact match).

        Args:
            text: The text to look for.
        """
        return await repo.search(text)

    return [Tool.from_function(f, timeout=90.0) for f in (list_files, read_file, search)]
