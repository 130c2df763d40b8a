"""The frameworks experiment: real framework agents (here the native ones) with and without the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aios.benchmarks.efficiency import frameworks as fx
from aios.benchmarks.efficiency.experiments import Options
from aios.benchmarks.efficiency.stub_server import StubLatency, StubServer
from aios.errors import ConfigError

pytestmark = pytest.mark.timeout(240)


def test_a_framework_without_its_environment_is_skipped_saying_how_to_build_it(tmp_path: Path):
    assert fx.framework_command("react") is not None
    assert fx.framework_command("autogen", root=tmp_path) is None
    venv_python = tmp_path / ".venvs" / "autogen" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    assert fx.framework_command("autogen", root=tmp_path) == [str(venv_python), "-m", "aios.benchmarks.cli"]


def test_unknown_frameworks_and_experiments_are_refused_by_name():
    with pytest.raises(ConfigError, match="unknown framework 'crewai'") as err:
        Options(frameworks=("crewai",)).validate()
    assert err.value.field == "frameworks"
    Options(experiments=("frameworks",)).validate()  # optional, but known


@pytest.mark.slow
def test_native_agents_run_in_both_modes_alternating_and_the_fastest_of_each_is_kept(tmp_path: Path):
    with StubServer(StubLatency(fixed_ms=1.0, per_token_ms=0.0)) as stub:
        result = fx.frameworks_experiment(
            stub.base_url,
            "stub",
            out=tmp_path,
            frameworks=("react",),
            bench="humaneval",
            agents=2,
            max_steps=1,
            action_tokens=8,
            timeout_s=120,
            repeats=2,
            log=lambda line: None,
        )
    # The modes alternate, so neither always runs on the server's warm prompt cache.
    assert [(r["mode"], r["repeat"]) for r in result["all_rows"]] == [
        ("kernel", 0),
        ("direct", 0),
        ("direct", 1),
        ("kernel", 1),
    ]
    rows = {(r["framework"], r["mode"]): r for r in result["rows"]}
    assert set(rows) == {("react", "kernel"), ("react", "direct")}, result["skipped"]
    for row in rows.values():
        assert row["tasks"] == 2 and row["done"] == 2 and row["llm_calls"] >= 2
        assert row["tasks_per_s"] == pytest.approx(2 / row["wall_s"])
        assert row["task_turnaround_s"]["n"] == 2.0
    # The kernel run's syscalls are the agents' calls; the direct run has no kernel to count them.
    assert rows[("react", "kernel")]["syscalls_by_kind"]["llm"] == rows[("react", "kernel")]["llm_calls"]
    assert rows[("react", "direct")]["syscalls_by_kind"] is None
    for mode in ("kernel", "direct"):
        fastest = min(r["wall_s"] for r in result["all_rows"] if r["mode"] == mode)
        assert rows[("react", mode)]["wall_s"] == fastest
    assert set(result["ratios"]["react"]) == {"wall_kernel_over_direct", "calls_per_s_kernel_over_direct"}
    meta = json.loads((tmp_path / "frameworks" / "react-direct-2" / "run.json").read_text())
    assert meta["kernel"] is False and meta["backend"]["kind"] == "openai"
    from aios.benchmarks.efficiency.plots import matplotlib_available, render

    if matplotlib_available():
        files = render({"frameworks": {**result, "backend": "STUB"}}, tmp_path / "plots")
        assert [f.name for f in files] == ["frameworks.png"] and files[0].stat().st_size > 0
