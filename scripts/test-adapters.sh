#!/usr/bin/env bash
# For each framework environment (envs/*.lock): build it, then run that adapter's tests in it.
set -euo pipefail
cd "$(dirname "$0")/.."
rc=0
for lock in envs/*.lock; do
  [ -e "$lock" ] || continue
  name=$(basename "$lock" .lock)
  echo "=== adapter environment: $name"
  scripts/make-env.sh "$name"
  set +e
  ".venvs/$name/bin/python" -m pytest -q "tests/adapters/$name" -p no:cacheprovider
  r=$?
  set -e
  # 5 = nothing collected: an environment whose tests do not exist yet is not a pass either.
  if [ "$r" -ne 0 ]; then echo "adapter tests for $name failed (exit $r)"; rc=1; fi
done
exit $rc
