"""The full seeded fault-injection run: 10,000 syscalls from 200 agents, then the same run without faults.

    python scripts/reliability/fault_injection.py [--seed 8] [--agents 200] [--calls 50] [--out result.json]

Prints the numbers (syscalls, faults injected by kind, errors by type, hung, late, retries, agents
hit, agents whose results differ from the fault-free run) as JSON; exits 1 if any syscall hung,
came back late (past its deadline + 1 s) or untyped, if a slice was retried after it had streamed
output, or if an agent no fault reached got different results than without faults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aios.chaos.workload import WorkloadConfig, compare, run_workload


def main(argv: list[str] | None = None) -> int:
    """Run both passes, print and check the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--agents", type=int, default=200)
    p.add_argument("--calls", type=int, default=50, help="calls per agent")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    size = {"seed": args.seed, "agents": args.agents, "calls_per_agent": args.calls}
    faulty = asyncio.run(run_workload(WorkloadConfig(**size)))
    clean = asyncio.run(run_workload(WorkloadConfig(**size, faults=False)))
    differ = compare(faulty, clean)
    spared = sorted({a for a, _ in clean.records} - faulty.hit_agents)
    late = sorted((r.elapsed - r.timeout for r in faulty.records.values()), reverse=True)[:1]
    out = {
        "faulty": faulty.summary(),
        "fault_free": clean.summary(),
        "agents_spared": len(spared),
        "agents_spared_with_different_results": differ,
        "worst_overrun_past_deadline_s": round(late[0], 3) if late else None,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    bad = (
        faulty.hung
        or faulty.late
        or faulty.untyped
        or faulty.retried_after_output
        or differ
        or clean.ok != clean.calls
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
