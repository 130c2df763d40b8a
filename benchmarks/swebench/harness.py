"""SWE-bench predictions in the official format, and grading through the official Docker harness.

``predictions.jsonl`` holds one ``{"instance_id", "model_name_or_path", "model_patch"}`` object
per line, the format ``swebench.harness.run_evaluation`` reads. Grading ("resolved": the
FAIL_TO_PASS tests now pass and PASS_TO_PASS still do) needs that harness (``pip install
swebench``) and a running Docker engine; ``docker_available`` checks both. Without them the
harness reports only whether each patch applies to its base commit, labelled as such, and never
as "resolved".
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PREDICTIONS = "predictions.jsonl"


async def docker_available(timeout: float = 20.0) -> tuple[bool, str]:
    """Whether the official harness can run here: swebench importable and a Docker engine answering."""
    if importlib.util.find_spec("swebench") is None:
        return False, "the swebench package is not installed (pip install swebench)"
    exe = shutil.which("docker")
    if exe is None:
        return False, "no docker command"
    proc = await asyncio.create_subprocess_exec(
        exe, "info", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with asyncio.timeout(timeout):
            code = await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False, "docker info did not answer"
    return (code == 0, "docker engine answers" if code == 0 else "no Docker engine is running")


def prediction(instance_id: str, patch: str | None, model: str) -> dict[str, str]:
    """One prediction in the official format."""
    return {"instance_id": instance_id, "model_name_or_path": model, "model_patch": patch or ""}


def write_predictions(path: Path, records: Sequence[Mapping[str, Any]], model: str) -> Path:
    """Write the official predictions file from result records (their ``metrics.model_patch``)."""
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            patch = (r.get("metrics") or {}).get("model_patch")
            fh.write(json.dumps(prediction(str(r["task_id"]), patch, model)) + "\n")
    return path


def harness_command(dataset: str, predictions: Path, run_id: str, *, workers: int = 4) -> list[str]:
    """The official harness invocation for ``predictions``."""
    return [
        sys.executable,
        "-m",
        "swebench.harness.run_evaluation",
        "--dataset_name",
        dataset,
        "--predictions_path",
        str(predictions),
        "--max_workers",
        str(workers),
        "--run_id",
        run_id,
    ]


async def run_harness(
    dataset: str, predictions: Path, run_id: str, *, cwd: Path, timeout: float = 6 * 3600
) -> set[str] | None:
    """Run the official harness; the resolved instance ids, or None if it produced no report."""
    with (cwd / "harness.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            *harness_command(dataset, predictions, run_id), cwd=str(cwd), stdout=log, stderr=subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return None
    for report in cwd.glob(f"*.{run_id}.json"):
        data = json.loads(report.read_text())
        return {str(i) for i in data.get("resolved_ids", [])}
    return None
