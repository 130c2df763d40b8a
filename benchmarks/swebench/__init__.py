"""SWE-bench Lite: agent patches, official predictions, Docker grading or a labelled applies check."""

from aios.benchmarks.swebench.benchmark import SweBench, extract_patch
from aios.benchmarks.swebench.harness import docker_available, write_predictions

__all__ = ["SweBench", "docker_available", "extract_patch", "write_predictions"]
