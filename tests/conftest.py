"""Shared factories: tiny kernels on a fake clock with simulated backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aios.backends.sim import SimBackend
from aios.clock import FakeClock
from aios.config import KernelConfig
from aios.kernel import Kernel
from aios.scheduler.policies import TimeSlice, make_policy
from aios.types import LLMRequest


def user(text: str) -> list[dict[str, Any]]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


def req(text: str, max_tokens: int = 8, **kw: Any) -> LLMRequest:
    """An LLM request whose sim answer has ``max_tokens`` tokens."""
    return LLMRequest(messages=user(text), max_tokens=max_tokens, **kw)


@pytest.fixture
def make_kernel() -> Callable[..., tuple[Kernel, FakeClock, list[tuple[str, int]]]]:
    """``make_kernel(policy="rr", slice_tokens=4, capacity=1, cores=1, **config)`` on a fake clock."""

    def factory(
        policy: str = "fifo",
        *,
        slice_tokens: int | None = None,
        capacity: int = 1,
        cores: int = 1,
        token_time: float = 0.01,
        **config: Any,
    ) -> tuple[Kernel, FakeClock, list[tuple[str, int]]]:
        clock = FakeClock()
        trace: list[tuple[str, int]] = []
        backends = {
            f"sim{i}": SimBackend(
                name=f"sim{i}", capacity=capacity, token_time=token_time, advance=clock.advance, trace=trace
            )
            for i in range(cores)
        }
        cfg = KernelConfig(backends=[], **config)
        kernel = Kernel(
            cfg,
            backends=backends,
            policy=make_policy(policy, TimeSlice(tokens=slice_tokens)),
            clock=clock,
            entry_points=False,
        )
        return kernel, clock, trace

    return factory
