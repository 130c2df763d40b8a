"""The paper-style table (its Table 1): success per framework and benchmark, without and with the kernel.

``load_runs(paths)`` reads run directories (or folders of them); ``build(runs)`` pairs the run
without the kernel with the run with it for each (benchmark, framework) and computes the delta on
the tasks both finished; ``markdown`` and ``csv_text`` render the result. Each benchmark's
headline metric is the first its ``summarize`` returns (so SWE-bench shows "patch applies (not
resolved)" unless the official harness graded the run).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.errors import ConfigError

from .core import success_rate
from .registry import get_benchmark
from .results import RunDir


@dataclass(slots=True)
class Run:
    """One run directory's metadata and per-task records."""

    path: Path
    meta: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def key(self) -> tuple[str, str]:
        """(benchmark, framework)."""
        return str(self.meta.get("benchmark")), str(self.meta.get("framework"))

    @property
    def kernel(self) -> bool:
        """Whether the run went through the kernel."""
        return bool(self.meta.get("kernel"))


@dataclass(slots=True)
class Cell:
    """One headline value: metric, value, task count."""

    metric: str
    value: float
    n: int


@dataclass(slots=True)
class Row:
    """One (benchmark, framework): the run without and with the kernel and their delta."""

    benchmark: str
    framework: str
    without: Run | None = None
    with_: Run | None = None
    cells: dict[str, Cell] = field(default_factory=dict)
    delta: float | None = None
    delta_n: int = 0


def load_runs(paths: Iterable[Path]) -> list[Run]:
    """Every run under ``paths`` (a run directory, or a folder whose subfolders are runs)."""
    runs: list[Run] = []
    for path in paths:
        candidates = (
            [path] if (path / "run.json").is_file() else sorted(p for p in path.iterdir() if p.is_dir())
        )
        for cand in candidates:
            rd = RunDir(cand)
            meta = rd.read_meta()
            if meta:
                runs.append(Run(cand, meta, list(rd.latest().values())))
    if not runs:
        raise ConfigError(f"no run directories (with run.json) under {[str(p) for p in paths]}", field="dirs")
    return runs


def summarize(benchmark: str, records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The benchmark's own summary, or the plain success rate if it is not installed here."""
    try:
        bench = get_benchmark(benchmark)
    except ConfigError:
        return {"success rate": success_rate(records)}
    return bench.summarize(records)


def _headline(run: Run, ids: set[str] | None = None) -> Cell:
    records = [r for r in run.records if ids is None or str(r["task_id"]) in ids]
    summary = summarize(run.key[0], records)
    if run.meta.get("resolved") is not None and ids is None:
        summary = {"resolved": float(run.meta["resolved"]), **summary}
    metric, value = next(iter(summary.items()))
    return Cell(metric, value, len({str(r["task_id"]) for r in records}))


def build(runs: Sequence[Run]) -> list[Row]:
    """Rows per (benchmark, framework); the latest run of each mode wins."""
    rows: dict[tuple[str, str], Row] = {}
    for run in sorted(runs, key=lambda r: float(r.meta.get("finished_at") or 0.0)):
        row = rows.setdefault(run.key, Row(*run.key))
        if run.kernel:
            row.with_ = run
        else:
            row.without = run
    for row in rows.values():
        for name, side in (("without", row.without), ("with", row.with_)):
            if side is not None:
                row.cells[name] = _headline(side)
        if row.without is not None and row.with_ is not None:
            common = {str(r["task_id"]) for r in row.without.records} & {
                str(r["task_id"]) for r in row.with_.records
            }
            if common:
                row.delta = _headline(row.with_, common).value - _headline(row.without, common).value
                row.delta_n = len(common)
    return sorted(rows.values(), key=lambda r: (r.benchmark, r.framework))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(cell: Cell | None) -> str:
    return "-" if cell is None else f"{_pct(cell.value)} (n={cell.n})"


def markdown(rows: Sequence[Row]) -> str:
    """The comparison table (values in %), then one line per run with its details."""
    benches = sorted({r.benchmark for r in rows})
    frameworks = sorted({r.framework for r in rows})
    by = {(r.benchmark, r.framework): r for r in rows}
    head = ["Framework"]
    for b in benches:
        metric = next((c.metric for r in rows if r.benchmark == b for c in r.cells.values()), "")
        head += [f"{b} {metric} w/o AIOS", f"{b} w/ AIOS", f"{b} Δ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fw in frameworks:
        cells = [fw]
        for b in benches:
            row = by.get((b, fw))
            if row is None:
                cells += ["-", "-", "-"]
                continue
            delta = "-" if row.delta is None else f"{100 * row.delta:+.1f} (n={row.delta_n})"
            cells += [_cell(row.cells.get("without")), _cell(row.cells.get("with")), delta]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Values in %; Δ = with minus without, on the tasks both runs finished.", ""]
    lines += [
        "| run | benchmark | framework | kernel | model | tasks | summary | wall time |",
        "|---|" * 1 + "---|" * 7,
    ]
    for row in rows:
        for run in (row.without, row.with_):
            if run is None:
                continue
            summary = ", ".join(f"{k} {_pct(v)}" for k, v in summarize(run.key[0], run.records).items())
            grading = f"; {run.meta['grading']}" if run.meta.get("grading") else ""
            lines.append(
                f"| {run.path.name} | {run.key[0]} | {run.key[1]} | {'with' if run.kernel else 'without'} | "
                f"{run.meta.get('model', '')} | {len(run.records)} | {summary}{grading} | "
                f"{float(run.meta.get('wall_s') or 0.0):.0f} s |"
            )
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Row]) -> str:
    """Long-form CSV: one line per run's headline, and one per delta."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["benchmark", "framework", "kernel", "metric", "value", "n", "wall_s", "run_dir"])
    for row in rows:
        for name, run in (("without", row.without), ("with", row.with_)):
            cell = row.cells.get(name)
            if run is None or cell is None:
                continue
            w.writerow(
                [
                    row.benchmark,
                    row.framework,
                    name,
                    cell.metric,
                    f"{cell.value:.6f}",
                    cell.n,
                    run.meta.get("wall_s", ""),
                    str(run.path),
                ]
            )
        if row.delta is not None:
            metric = row.cells["with"].metric
            w.writerow(
                [row.benchmark, row.framework, "delta", metric, f"{row.delta:.6f}", row.delta_n, "", ""]
            )
    return buf.getvalue()
