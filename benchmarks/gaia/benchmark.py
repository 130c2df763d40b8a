"""GAIA validation set (165 questions, levels 1-3) from a local snapshot; scored by GAIA's rules.

GAIA is gated on the Hugging Face hub and its terms forbid copies outside gated repos, so the
loader reads a snapshot the user downloaded: ``--data`` (or ``$AIOS_GAIA_DATA``) is the snapshot
folder (with ``2023/validation/metadata.parquet`` or the older ``metadata.jsonl``), the
``validation`` folder itself, or the metadata file. Given a hub id (``gaia-benchmark/GAIA``) it
downloads the snapshot with ``huggingface_hub`` when that is installed and you are logged in.

Attachments (``file_name``) are copied into the episode's own folder; the agent gets a
``python`` tool that runs there (so the code can open the file) and ``read_file`` for text. The
final answer is what follows "FINAL ANSWER:" in the agent's answer (or the whole answer).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aios.managers.tools import Tool

from ..core import JSON, AgentDefaults, AgentOutput, DataNotFoundError, Episode, Score, Task, success_rate
from ..execution import CodeRunner, Limits, python_tool
from .scorer import extract_final_answer, question_scorer

ENV_VAR = "AIOS_GAIA_DATA"
HUB_ID = "gaia-benchmark/GAIA"
METADATA = ("metadata.parquet", "metadata.jsonl")
READ_LIMIT = 16 * 1024
HOW_TO_GET = (
    "GAIA is gated: accept its terms at huggingface.co/datasets/gaia-benchmark/GAIA, download a "
    "snapshot (huggingface-cli download gaia-benchmark/GAIA --repo-type dataset --local-dir DIR) "
    f"and pass --data DIR (or set {ENV_VAR}); the loader reads 2023/validation/metadata.parquet "
    "(or metadata.jsonl) and the attachments beside it"
)

#: GAIA's own system prompt (from the GAIA paper and leaderboard), unchanged.
GAIA_PROMPT = (
    "You are a general AI assistant. I will ask you a question. Report your thoughts, and finish "
    "your answer with the following template: FINAL ANSWER: [YOUR FINAL ANSWER]. YOUR FINAL ANSWER "
    "should be a number OR as few words as possible OR a comma separated list of numbers and/or "
    "strings. If you are asked for a number, don't use comma to write your number neither use units "
    "such as $ or percent sign unless specified otherwise. If you are asked for a string, don't use "
    "articles, neither abbreviations (e.g. for cities), and write the digits in plain text unless "
    "specified otherwise. If you are asked for a comma separated list, apply the above rules "
    "depending of whether the element to be put in the list is a number or a string."
)


def _metadata_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    for folder in (path / "2023" / "validation", path / "validation", path):
        for name in METADATA:
            if (folder / name).is_file():
                return folder / name
    return None


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise DataNotFoundError(
            f"{repo_id!r} is not a local path and huggingface_hub is not installed: {HOW_TO_GET}",
            field="data",
        ) from None
    try:
        return Path(snapshot_download(repo_id=repo_id, repo_type="dataset"))
    except Exception as exc:  # network, gating, auth: all mean "no data here"
        raise DataNotFoundError(
            f"could not download {repo_id!r} ({exc}): {HOW_TO_GET}", field="data"
        ) from None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a GAIA metadata file (parquet needs pyarrow)."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError:
            raise DataNotFoundError(
                f"reading {path} needs pyarrow (pip install pyarrow, or the 'bench' extra)", field="data"
            ) from None
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class Gaia:
    """GAIA's validation set (loader, prompt protocol, official scorer)."""

    name = "gaia"
    metric = "exact match"
    defaults = AgentDefaults(max_steps=6, thought_tokens=64, action_tokens=128)

    def __init__(self, *, data: str | None = None, runner: CodeRunner | None = None):
        self.data = data
        self.runner = runner or CodeRunner()

    def load(self, source: str | None = None) -> list[Task]:
        """The questions that have an answer (the validation split), with their attachments' paths."""
        where = source or self.data or os.environ.get(ENV_VAR)
        if not where:
            raise DataNotFoundError(f"no GAIA snapshot given: {HOW_TO_GET}", field="data")
        path = Path(where)
        if not path.exists() and "/" in where and not where.startswith((".", "/")):
            path = _hub_snapshot(where)
        meta = _metadata_file(path)
        if meta is None:
            raise DataNotFoundError(f"no GAIA metadata under {str(path)!r}: {HOW_TO_GET}", field="data")
        tasks = []
        for i, row in enumerate(read_rows(meta)):
            missing = {"task_id", "Question", "Level", "Final answer"} - set(row)
            if missing:
                raise DataNotFoundError(f"{meta} row {i} lacks {sorted(missing)}", field="data")
            if row["Final answer"] in (None, "", "?"):
                continue  # the test split's answers are hidden
            file_name = str(row.get("file_name") or "")
            data = {
                "task_id": str(row["task_id"]),
                "question": str(row["Question"]),
                "level": str(row["Level"]),
                "answer": str(row["Final answer"]),
                "file": str(meta.parent / file_name) if file_name else "",
            }
            tasks.append(Task(id=data["task_id"], data=data, group=f"level {data['level']}"))
        return tasks

    async def episode(self, task: Task) -> Episode:
        """GAIA's prompt and question; a python tool in a folder holding the attachment, if any."""
        question = str(task.data["question"])
        workdir = Path(tempfile.mkdtemp(prefix="aios-gaia-"))
        os.chmod(workdir, 0o755)
        ep = Episode(prompt="", max_steps=self.defaults.max_steps, workdir=workdir)
        ep.own(workdir)
        tools = [python_tool(self.runner, workdir=workdir, limits=Limits(timeout_s=30.0, memory_mb=1024))]
        source = Path(str(task.data.get("file") or ""))
        note = ""
        if task.data.get("file"):
            if not source.is_file():
                raise DataNotFoundError(
                    f"GAIA attachment {str(source)!r} is missing: {HOW_TO_GET}", field="data"
                )
            shutil.copy(source, workdir / source.name)
            ep.files.append(workdir / source.name)
            tools.append(_read_file_tool(workdir))
            note = (
                f"\n\nAttached file: {source.name} (in the python tool's working directory; "
                "read_file shows it as text)."
            )
        ep.prompt = f"{GAIA_PROMPT}\n\nQuestion: {question}{note}"
        ep.system = "Give your final answer with finish, as: FINAL ANSWER: <answer>."
        ep.tools = tools

        async def self_check(answer: str | None) -> tuple[bool, str]:
            final = extract_final_answer(answer)
            if not final:
                return False, "You gave no final answer."
            return True, "An answer was given."

        ep.self_check = self_check
        return ep

    async def score(self, task: Task, episode: Episode, output: AgentOutput) -> Score:
        """GAIA's rules on the extracted final answer."""
        final = extract_final_answer(output.answer)
        ok = question_scorer(final, str(task.data["answer"]))
        metrics: dict[str, JSON] = {"final_answer": final, "level": task.data["level"]}
        return Score(
            success=ok, metrics=metrics, detail=f"answer {final!r} vs expected {task.data['answer']!r}"
        )

    def summarize(self, records: Sequence[Mapping[str, JSON]]) -> dict[str, float]:
        """Exact match overall and per level."""
        out = {"exact match": success_rate(records)}
        for level in ("1", "2", "3"):
            part = [r for r in records if r.get("group") == f"level {level}"]
            if part:
                out[f"level {level}"] = success_rate(part)
        return out


def _read_file_tool(workdir: Path) -> Tool:
    def read_file(name: str) -> str:
        """Read an attached file as text (binary files: use python to open them).

        Args:
            name: The attachment's file name.
        """
        path = (workdir / name).resolve()
        if path.parent != workdir.resolve() or not path.is_file():
            raise ValueError(
                f"no attachment named {name!r}; have {sorted(p.name for p in workdir.iterdir())}"
            )
        data = path.read_bytes()
        if b"\x00" in data[:4096]:
            return f"{name} is a binary file of {len(data)} bytes; open it with the python tool."
        text = data[:READ_LIMIT].decode("utf-8", errors="replace")
        more = f"\n... [{len(data) - READ_LIMIT} more bytes]" if len(data) > READ_LIMIT else ""
        return text + more

    return Tool.from_function(read_file, timeout=10.0)
