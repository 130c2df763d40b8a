"""Efficiency and scalability experiments (issue 7): sequential vs direct vs kernel, overhead, scale.

``python -m aios.benchmarks.efficiency --quick`` (or ``aios-bench efficiency --quick``) runs them
all at small scale; see ``cli.py`` for the options and ``experiments.py`` for what each measures.
"""

from aios.benchmarks.efficiency.cli import add_arguments, add_parser, main, run_args

__all__ = ["add_arguments", "add_parser", "main", "run_args"]
