"""MINT: the real 136-task data, MINT's protocol (turns, proposals, count-down, session), the scorer."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.backends.scripted import ScriptedBackend, text, tool_call
from aios.benchmarks.core import DataNotFoundError, Task
from aios.benchmarks.execution import CodeRunner, PythonSession
from aios.benchmarks.frameworks import AgentSettings, AgentSpec, run_react
from aios.benchmarks.mint import Mint, MintEnv
from aios.benchmarks.mint.benchmark import find_data
from aios.benchmarks.runtime import DirectLLM

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mint"
needs_data = pytest.mark.skipif(
    not (DATA / "humaneval" / "test_prompts.jsonl").is_file(), reason=f"MINT data not found at {DATA}"
)


def toy_env(right: str = "RIGHT") -> MintEnv:
    async def check(solution: str) -> bool:
        return solution.strip() == right

    return MintEnv(session=PythonSession(CodeRunner()), check=check)


@needs_data
def test_the_code_subset_has_45_humaneval_and_91_mbpp_tasks():
    tasks = Mint(data=str(DATA)).load()
    assert len(tasks) == 136
    assert sum(t.group == "humaneval" for t in tasks) == 45 and sum(t.group == "mbpp" for t in tasks) == 91
    assert tasks[0].id == "humaneval/HumanEval/0" and tasks[45].id == "mbpp/16"


@needs_data
def test_the_first_message_is_mints_prompt():
    bench = Mint(data=str(DATA))
    tasks = bench.load()
    prompt = bench.user_prompt(tasks[0])
    assert "You have 5 chances to interact with the environment or propose a solution." in prompt
    assert "You can only propose a solution 2 times." in prompt
    assert "<execute>" in prompt and "similar_elements" in prompt  # the in-context example
    assert "Task:\nComplete the following code:\n\nfrom typing import List" in prompt
    mbpp = bench.user_prompt(tasks[45])
    assert (
        "Task:\nWrite a function to find sequences of lowercase letters" in mbpp and '"""' not in mbpp[-300:]
    )


def test_missing_data_names_where_it_looked_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AIOS_MINT_DATA", raising=False)
    monkeypatch.setattr("aios.benchmarks.mint.benchmark.project_root", lambda: tmp_path / "proj")
    with pytest.raises(DataNotFoundError, match="xingyaoww/mint-bench") as err:
        find_data(str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(err.value)


@needs_data
async def test_the_canonical_solution_is_accepted_and_a_wrong_one_is_not():
    bench = Mint(data=str(DATA))
    task = bench.load()[0]
    right = str(task.data["prompt"]) + "\n" + str(task.data["canonical_solution"])
    env = bench.make_env(task)
    ok, obs = await env.propose("def has_close_elements(numbers, threshold):\n    return False")
    assert not ok and obs.startswith("Observation:\nYour answer is wrong.\n")
    ok, obs = await env.propose(right)
    assert ok and env.solved_at == 2 and env.terminate_reason == "task_success"


async def test_wrong_proposals_count_down_and_end_the_episode_at_two():
    env = toy_env()
    ok, obs = await env.propose("WRONG")
    assert not ok
    assert obs == (
        "Observation:\nYour answer is wrong.\nYou have 4 steps left and 1 chances to propose solution left.\n"
    )
    assert not env.finished
    await env.propose("WRONG AGAIN")
    assert env.finished and env.terminate_reason == "max_propose_steps" and env.solved_at is None


async def test_five_actions_end_the_episode_and_the_last_step_is_announced():
    env = toy_env()
    for _ in range(3):
        await env.execute("pass")
    obs = await env.execute("print('hi')")
    assert obs == (
        "Observation:\nhi\nYou have 1 steps left and 2 chances to propose solution left.\n"
        "You should take the last step to propose a solution.\n"
    )
    ok, _ = await env.propose("RIGHT")
    assert ok and env.solved_at == 5 and env.finished


async def test_the_tag_protocol_executes_proposes_or_asks_again():
    env = toy_env()
    obs = await env.step_text("<thought> try </thought>\n<execute>\nx = 6 * 7\nprint(x)\n</execute>")
    assert obs.startswith("Observation:\n42\nYou have 4 steps left")
    assert "I don't understand your input." in await env.step_text("just chatting")
    assert env.invalid == 1 and env.actions == 2
    obs = await env.step_text("The answer is <solution> RIGHT </solution>")
    assert env.solved_at == 3 and obs == (
        "Observation:\nYou have 2 steps left and 1 chances to propose solution left.\n"
    )


async def test_react_acts_in_mint_until_its_solution_is_accepted():
    backend = ScriptedBackend(
        text("run it"),
        tool_call("execute", {"code": "print(1 + 1)"}),
        text("propose"),
        tool_call("finish", {"answer": "WRONG"}),
        text("try again"),
        tool_call("finish", {"answer": "RIGHT"}),
    )
    bench = Mint()
    env = toy_env()
    ep = await bench_episode_with(bench, env)
    out = await run_react(AgentSpec("m", ep, DirectLLM(backend), AgentSettings(max_steps=5)))
    backend.check()
    assert [s["action"] for s in out.steps] == ["execute", "finish", "finish"]
    assert "2\nYou have 4 steps left" in out.steps[0]["observation"]
    assert (
        out.steps[1]["error"] == "WrongAnswerError" and "Your answer is wrong." in out.steps[1]["observation"]
    )
    assert out.answer == "RIGHT" and env.solved_at == 3
    score = await bench.score(Task("t", {}), ep, out)
    assert score.success and score.metrics["solved_at"] == 3


async def test_the_episode_ends_when_the_environment_says_so():
    backend = ScriptedBackend(
        text("a"), tool_call("finish", {"answer": "W1"}), text("b"), tool_call("finish", {"answer": "W2"})
    )
    env = toy_env()
    ep = await bench_episode_with(Mint(), env)
    out = await run_react(AgentSpec("m", ep, DirectLLM(backend), AgentSettings(max_steps=5)))
    backend.check()  # no third step after the second wrong proposal
    assert len(out.steps) == 2 and env.terminate_reason == "max_propose_steps"


def test_success_at_k_counts_tasks_solved_by_their_kth_action():
    records = [
        {"success": True, "group": "humaneval", "metrics": {"solved_at": 1}},
        {"success": True, "group": "mbpp", "metrics": {"solved_at": 3}},
        {"success": False, "group": "mbpp", "metrics": {"solved_at": None}},
        {"success": False, "group": "mbpp", "metrics": {"solved_at": None}},
    ]
    s = Mint().summarize(records)
    assert s["success rate (5 turns)"] == 0.5
    assert [s[f"success@{k}"] for k in range(1, 6)] == [0.25, 0.25, 0.5, 0.5, 0.5]
    assert s["humaneval success rate"] == 1.0 and s["mbpp success rate"] == pytest.approx(1 / 3)


async def bench_episode_with(bench: Mint, env: MintEnv):  # type: ignore[no-untyped-def]
    """The benchmark's episode for a toy task, acting in ``env``."""
    bench.make_env = lambda task: env  # type: ignore[method-assign]
    bench.user_prompt = lambda task: "toy task"  # type: ignore[method-assign]
    return await bench.episode(Task("t", {"reference": "", "subset": "humaneval", "prompt": ""}))
