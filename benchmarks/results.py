"""A run's directory: ``run.json`` (what was run, how long it took) and ``results.jsonl`` (one line per task).

Each task's record is appended as soon as it is scored, flushed and fsynced, so an interrupted
run loses at most the tasks that were in flight. A line cut by the interruption is dropped when
the run is resumed. Records whose ``status`` is ``"error"`` (the harness or backend failed, not
the agent) are run again on resume; every other record counts as finished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aios.errors import ConfigError

RESULTS = "results.jsonl"
META = "run.json"
#: The settings that identify a run: resuming must not mix results of different runs.
IDENTITY = ("benchmark", "framework", "kernel")


class RunDirError(ConfigError):
    """The output directory cannot hold this run (another run is there, or it is unreadable)."""


@dataclass(slots=True)
class RunDir:
    """The files of one run."""

    path: Path

    @property
    def results_path(self) -> Path:
        """The JSONL file of per-task records."""
        return self.path / RESULTS

    @property
    def meta_path(self) -> Path:
        """The run's metadata file."""
        return self.path / META

    def read_meta(self) -> dict[str, Any]:
        """``run.json`` (empty if the run never wrote it)."""
        try:
            data = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.meta_path} is unreadable: {exc}", field="output") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{self.meta_path} is not a JSON object", field="output")
        return data

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Replace ``run.json`` atomically."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.meta_path)

    def records(self) -> list[dict[str, Any]]:
        """Every complete record, in file order (a cut last line is skipped)."""
        try:
            text = self.results_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
            if isinstance(rec, dict) and "task_id" in rec:
                out.append(rec)
        return out

    def latest(self) -> dict[tuple[str, int], dict[str, Any]]:
        """The last record of each (task, sample)."""
        return {(str(r["task_id"]), int(r.get("sample", 0))): r for r in self.records()}

    def finished(self) -> set[tuple[str, int]]:
        """(task, sample) pairs that need not run again: their last record is not a harness error."""
        return {key for key, r in self.latest().items() if r.get("status") != "error"}

    def repair(self) -> None:
        """Drop a partial last line left by an interruption, so the next append starts clean."""
        try:
            data = self.results_path.read_bytes()
        except FileNotFoundError:
            return
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.results_path.open("r+b") as fh:
                fh.truncate(cut)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably (flushed and fsynced before returning)."""
        line = json.dumps(dict(record), ensure_ascii=False, default=str) + "\n"
        with self.results_path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def prepare(self, meta: Mapping[str, Any], *, resume: bool) -> set[tuple[str, int]]:
        """Check the directory can take this run; return the (task, sample) pairs already finished."""
        old = self.read_meta()
        has_results = self.results_path.exists() and self.results_path.stat().st_size > 0
        if (old or has_results) and not resume:
            raise RunDirError(
                f"{self.path} already holds a run; pass --resume to continue it or choose another --output",
                field="output",
            )
        if old:
            for key in IDENTITY:
                if key in old and old[key] != meta.get(key):
                    raise RunDirError(
                        f"{self.path} holds a run with {key}={old[key]!r}, not {meta.get(key)!r}; "
                        "choose another --output",
                        field=key,
                    )
        self.path.mkdir(parents=True, exist_ok=True)
        self.repair()
        return self.finished()
