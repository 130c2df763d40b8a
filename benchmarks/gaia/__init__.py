"""GAIA's validation set from a local snapshot, scored by GAIA's official rules."""

from aios.benchmarks.gaia.benchmark import Gaia
from aios.benchmarks.gaia.scorer import extract_final_answer, question_scorer

__all__ = ["Gaia", "extract_final_answer", "question_scorer"]
