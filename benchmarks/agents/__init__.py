"""Benchmark agent factories for the third-party frameworks, one module per framework.

Each module has ``async def run(spec: AgentSpec) -> AgentOutput``: it builds that framework's own
agent with the episode's tools and runs it inside ``framework_support.endpoint(spec, adapter)``,
which routes its calls through the kernel (patched) or, without the kernel, to the backend
directly. Modules import their framework lazily; ``aios.benchmarks.frameworks`` loads them.
"""
