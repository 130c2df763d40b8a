"""The full soak: 100,000 mixed syscalls on the sim backend in one kernel; resources must stay flat.

    python scripts/reliability/soak.py [--syscalls 100000] [--agents 50] [--metrics-keep 1000]
        [--out result.json]

Prints the samples (RSS, tracked objects, allocator blocks, tasks, fds, threads, child processes,
the dispatcher's books) and the growth over the second half as JSON. With ``--metrics-keep
100000`` (the kernel's default) the metrics ring fills during the run; the report also gives, on
its own, what a full default ring costs. Exits 1 on an untyped error or a leaked task, file
handle or process after the kernel stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from aios.chaos.soak import SoakConfig, run_soak


def main(argv: list[str] | None = None) -> int:
    """Run the soak, print and check the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--syscalls", type=int, default=100_000)
    p.add_argument("--agents", type=int, default=50)
    p.add_argument("--metrics-keep", type=int, default=1_000)
    p.add_argument("--python-every", type=int, default=5_000, help="one sandboxed run every N syscalls")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    report = asyncio.run(
        run_soak(
            SoakConfig(
                syscalls=args.syscalls,
                agents=args.agents,
                metrics_keep=args.metrics_keep,
                python_every=args.python_every,
            )
        )
    )
    out = report.summary()
    text = json.dumps(out, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    base, after = report.baseline, report.after_stop
    assert base is not None and after is not None
    leaked = after.tasks != base.tasks or after.fds != base.fds or after.children != 0
    return 1 if report.untyped or leaked else 0


if __name__ == "__main__":
    sys.exit(main())
