"""``python -m aios.benchmarks.efficiency``: the efficiency benchmark's command line."""

from aios.benchmarks.efficiency.cli import main

raise SystemExit(main())
