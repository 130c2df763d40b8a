"""The full crash test: kill -9 of ``aios serve`` during storage and memory writes, restart, 20 times.

    python scripts/reliability/crash_restart.py [--rounds 20] [--writers 8] [--seed 20]
        [--workdir DIR] [--out result.json]

Prints writes acknowledged vs found after the restarts, the memory entries seen evicted vs found
in storage (and whether the memory API can still read them by id), the integrity check of the
database after every kill. Exits 1 if an acknowledged write or an evicted memory entry was lost or
an integrity check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from aios.chaos.crash import CrashConfig, run_crash_restart


def main(argv: list[str] | None = None) -> int:
    """Run the rounds, print and check the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--workdir", type=Path, default=None, help="keep the data and server logs here")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = CrashConfig(rounds=args.rounds, writers=args.writers, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="aios-crash-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = asyncio.run(run_crash_restart(cfg, workdir))
    text = json.dumps(report.summary(), indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    lost = report.storage_lost or report.memory_evicted_lost or set(report.integrity) != {"ok"}
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
