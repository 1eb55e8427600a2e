#!/usr/bin/env bash
# Install Aris into .venv on a fresh machine: Python deps (CPU torch pinned), then llama-cpp-python
# built from source (no wheel on PyPI) with the flags that avoid a crash on these CPUs.
# Takes about 7 minutes on 2 cores, most of it compiling llama.cpp; later runs reuse the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
CACHE=.cache
mkdir -p "$CACHE/sdist" "$CACHE/wheels"

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip

echo "== Python dependencies (torch==2.13.0 CPU build; see README for CUDA)"
python -m pip install -q "torch==2.13.0" -e ".[dev,ray,postgres]"
# The example plugin (a reader, a task and an engine through entry points) that the tests drive.
python -m pip install -q --no-deps -e tests/plugins/aris-example-plugin

echo "== MedASR beam search: kenlm (built from source) and pyctcdecode"
# pyctcdecode 0.5.0 declares numpy<2 but runs on numpy 2: installed without its dependencies so pip
# does not downgrade numpy; its one runtime dependency besides numpy (pygtrie) comes with .[asr-lm].
python -m pip install -q -e ".[asr-lm]"
python -m pip install -q --no-deps "pyctcdecode==0.5.0"

echo "== llama-cpp-python $LLAMA_VERSION"
SDIST="$CACHE/sdist/llama_cpp_python-$LLAMA_VERSION.tar.gz"
# The sdist also carries llama.cpp's HF->GGUF converter, used to build the tiny vision GGUF for tests.
[ -f "$SDIST" ] || python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$CACHE/sdist"
WHEEL=$(ls "$CACHE"/wheels/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  # GGML_NATIVE=OFF: the native build segfaults in llama_decode on Q4_K models (AVX-512/AMX repack path).
  CMAKE_ARGS="-DGGML_NATIVE=OFF ${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
    python -m pip wheel -q --no-deps "$SDIST" -w "$CACHE/wheels"
  WHEEL=$(ls "$CACHE"/wheels/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n1)
fi
python -m pip install -q "$WHEEL" "llama-cpp-python[server]==$LLAMA_VERSION" --find-links "$CACHE/wheels"

python -c "import aris, llama_cpp, torch; print('aris', aris.__version__, '| torch', torch.__version__, '| llama-cpp-python', llama_cpp.__version__)"
echo "== installed: run '.venv/bin/aris demo'"
