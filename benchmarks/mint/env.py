"""MINT's interaction protocol (``max5_p2+tool+cd``) for one task, after xingyaoww/mint-bench.

At most ``max_steps`` actions (5) of which at most ``max_proposals`` (2) propose a solution; every
observation ends with the count-down line "You have N steps left and M chances to propose
solution left." (plus "You should take the last step to propose a solution." when one step is
left). ``<execute>`` code runs in a persistent Python session (sandboxed, see
``aios.benchmarks.execution.PythonSession``); a proposed solution is checked by running
``solution + "\\n" + reference`` with a 10 s limit. An answer that is wrong is reported as
"Your answer is wrong." and the episode goes on while budget remains.

Two ways in: ``step_text`` takes a model's raw output in MINT's tag protocol (``<execute>``,
``<solution>``, else the invalid-input message); ``execute``/``propose`` are the same two actions
as tools for tool-calling agents (ReAct's ``execute`` tool and its ``finish``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..execution import PythonSession

MAX_STEPS = 5
MAX_PROPOSALS = 2

INVALID_INPUT_MESSAGE = (
    "I don't understand your input. \n"
    "If you want to execute code, please use <execute> YOUR_CODE_HERE </execute>.\n"
    "If you want to give me an answer, please use <solution> YOUR_SOLUTION_HERE </solution>.\n"
    "For example: The answer to the question is <solution> 42 </solution>. \n"
)


def _tagged(tag: str, text: str) -> str:
    return "\n".join(m.strip() for m in re.findall(rf"<{tag}>(.*?)</{tag}>", "\n" + text + "\n", re.DOTALL))


@dataclass(slots=True)
class MintEnv:
    """The state of one MINT episode: actions taken, proposals made, when (if) it was solved."""

    session: PythonSession
    check: Callable[[str], Awaitable[bool]]
    max_steps: int = MAX_STEPS
    max_proposals: int = MAX_PROPOSALS
    actions: int = 0
    proposals: int = 0
    invalid: int = 0
    #: The action (1-based) whose proposal was right; None while unsolved.
    solved_at: int | None = None
    terminate_reason: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Solved, or out of steps or proposals."""
        return self.terminate_reason is not None

    def _end_of_action(self) -> None:
        if self.finished:
            return
        if self.proposals >= self.max_proposals:
            self.terminate_reason = "max_propose_steps"
        elif self.actions >= self.max_steps:
            self.terminate_reason = "max_steps"

    def count_down(self) -> str:
        """MINT's count-down line(s) for the current budget."""
        steps_left = self.max_steps - self.actions
        line = (
            f"You have {steps_left} steps left and {self.max_proposals - self.proposals} "
            "chances to propose solution left.\n"
        )
        if steps_left <= 1:
            line += "You should take the last step to propose a solution.\n"
        return line

    def _observe(self, observation: str | None, *, solved: bool = False) -> str:
        text = "Observation:\n"
        if observation is not None:
            text += observation + "\n"
        elif not solved:
            text += "Your answer is wrong.\n"
        return text + self.count_down()

    async def execute(self, code: str) -> str:
        """Run ``code`` in the session as one action; the observation with the count-down."""
        if self.finished:
            return "Observation:\nThe episode is over.\n"
        self.actions += 1
        out = await self.session.execute(code)
        self._end_of_action()
        self.history.append({"action": "execute", "input": code, "observation": out})
        return self._observe(out)

    async def propose(self, solution: str) -> tuple[bool, str]:
        """Check ``solution`` as one action; (right?, the observation with the count-down)."""
        if self.finished:
            return self.solved_at is not None, "Observation:\nThe episode is over.\n"
        self.actions += 1
        self.proposals += 1
        ok = bool(solution.strip()) and await self.check(solution)
        if ok:
            self.solved_at = self.actions
            self.terminate_reason = "task_success"
        self._end_of_action()
        self.history.append(
            {"action": "propose", "input": solution, "observation": "right" if ok else "wrong"}
        )
        return ok, self._observe(None, solved=ok)

    async def step_text(self, lm_output: str) -> str:
        """One action in MINT's tag protocol: ``<solution>`` proposes, ``<execute>`` runs code."""
        if "<solution>" in lm_output:
            answer = _tagged("solution", lm_output)
            if answer:
                return (await self.propose(answer))[1]
            self.proposals += 1  # upstream counts an unparsable proposal as one
        else:
            code = _tagged("execute", lm_output)
            if code:
                return await self.execute(code)
            self.invalid += 1
        self.actions += 1
        self._end_of_action()
        return self._observe(INVALID_INPUT_MESSAGE)
