"""MINT's code subset (136 tasks) under MINT's multi-turn protocol."""

from aios.benchmarks.mint.benchmark import Mint, find_data
from aios.benchmarks.mint.env import MintEnv

__all__ = ["Mint", "MintEnv", "find_data"]
