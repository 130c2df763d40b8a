#!/usr/bin/env bash
# Static checks: ruff, mypy (strict) and the import-layer contract (import-linter).
# mypy and grimp cannot follow setuptools' editable-install finder, which maps aios -> aios_core/,
# aios.adapters -> adapters/ and aios.benchmarks -> benchmarks/, so the tree is copied into that
# layout under .typecheck/ and checked there; errors are printed with the source paths.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
tree=.typecheck
rm -rf "$tree" && mkdir -p "$tree"
cp -r aios_core "$tree/aios"
cp -r adapters "$tree/aios/adapters"
cp -r benchmarks "$tree/aios/benchmarks"
find "$tree" -name __pycache__ -prune -exec rm -rf {} +
unmap() { sed -e "s#$tree/aios/adapters/#adapters/#" -e "s#$tree/aios/benchmarks/#benchmarks/#" -e "s#$tree/aios/#aios_core/#"; }
rc=0
MYPYPATH="$tree" mypy "$tree/aios" 2>&1 | unmap || rc=1
PYTHONPATH="$tree" lint-imports 2>&1 | tail -n 25 || rc=1
exit $rc
