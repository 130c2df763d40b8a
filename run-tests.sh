#!/usr/bin/env bash
# Install (idempotent), then lint, type-check, check the import layers, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
. .venv/bin/activate
scripts/check.sh
set +e
python -m pytest -q "$@"
rc=$?
set -e
# pytest exits 5 when a selection collected no tests: that is not a failure of the project.
if [ "$rc" -eq 5 ]; then rc=0; fi
# Each framework adapter's tests, in that framework's own environment (built from envs/*.lock).
if [ "$#" -eq 0 ]; then
  scripts/test-adapters.sh || rc=1
fi
exit "$rc"
