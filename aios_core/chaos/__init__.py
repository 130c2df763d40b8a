"""Chaos engineering for the kernel: components that fail on a seeded schedule, and the runs that use them.

- ``FaultPlan`` / ``FaultLog`` (``faults``): which call gets which fault, and what really happened.
- ``ChaosBackend`` (``backend``, kind ``"chaos"``): any backend, with typed errors, latency spikes,
  drops before or during the stream, malformed outcomes, hangs and foreign exceptions.
- ``ChaosLLMServer`` (``http_stub``): a real OpenAI-compatible loopback server that answers 429,
  500, 503, HTML error pages, drops, bad JSON, stalls and hangs, for the ``openai`` backend.
- ``make_chaos_tool`` / ``make_blocking_chaos_tool`` (``tools``): tools that raise, hang or return garbage.
- ``ChaosPolicy``, ``ChaosContext``, ``ChaosStore``, ``install`` (``components``): faults inside the
  kernel's own policy, context manager and storage backend.
- ``run_workload`` (``workload``), ``run_soak`` (``soak``), ``crash`` helpers: the reliability runs.
"""

from aios.chaos.backend import ChaosBackend
from aios.chaos.components import ChaosContext, ChaosPolicy, ChaosStore, LabelBook, install
from aios.chaos.faults import ChaosFault, Fault, FaultLog, FaultPlan
from aios.chaos.http_stub import ChaosLLMServer
from aios.chaos.tools import make_blocking_chaos_tool, make_chaos_tool

__all__ = [
    "ChaosBackend",
    "ChaosContext",
    "ChaosFault",
    "ChaosLLMServer",
    "ChaosPolicy",
    "ChaosStore",
    "Fault",
    "FaultLog",
    "FaultPlan",
    "LabelBook",
    "install",
    "make_blocking_chaos_tool",
    "make_chaos_tool",
]
