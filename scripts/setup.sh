#!/usr/bin/env bash
# Install everything monoculture and its tests need on a fresh Debian/Ubuntu machine:
# Chromium (browser tests of the HTML reports) and the Python package with all extras used by
# the tests. torch is pinned to the CPU build so that pip does not pull a multi-GB CUDA build;
# on a GPU machine install the torch you want first and drop the pin.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "warning: no chromium and no apt-get; browser tests will be skipped" >&2
  fi
fi

python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev]"

# the real inference engines the tests in tests/engines/ run (vLLM on CPU in .venv-vllm, llama.cpp);
# a failed install makes those tests skip with its reason, it does not fail the setup
bash scripts/setup_engines.sh
