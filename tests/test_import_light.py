"""What importing the command line loads: not numba.

vLLM's CPU workers import the `monoculture` entry point again in each spawned process, and
vLLM 0.32 then scans every loaded module for Triton kernels; llvmlite (loaded with numba) has
an object whose ``__dict__`` lookup returns a function wrapper, and the scan crashes the
worker ("'_lib_fn_wrapper' object has no attribute 'get'"; tests/engines/test_vllm_cpu.py
failed that way when the metrics imported their compiled kernels with the package). The
kernels are imported where they run.
"""

import subprocess
import sys


def test_the_cli_and_the_metrics_import_without_numba():
    code = (
        "import sys, monoculture.cli, monoculture.metrics, monoculture.metrics.voices, monoculture.metrics.lexical\n"
        "loaded = sorted(m for m in ('numba', 'llvmlite') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
