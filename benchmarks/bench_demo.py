"""How long does `monoculture demo` take from nothing, and how long does a rerun take?

Runs the installed ``monoculture demo`` in a new temporary folder as a user would (a fresh
process, so the time includes Python's start and every import), pinned to ``--cores`` CPUs
(default 2, with the BLAS/OpenMP thread counts set to match), then runs it again on the same
folder (the rerun should reuse everything). Prints the wall and CPU time of each run, the time
to each phase (the lines the demo prints as it starts one), and the load average, since a
machine busy with other work makes the wall time longer than the CPU time. Target: a fresh run
under 2 minutes on 2 cores.

    python benchmarks/bench_demo.py [--cores 2] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 120.0
PHASES = ("importing", "measuring", "writing")


def run(out: Path, cores: int) -> tuple[float, float, list[tuple[float, str]], str]:
    """(wall s, CPU s, [(s since start, phase line)], stdout) of one ``monoculture demo``."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(cores)
    env["COLUMNS"] = "160"
    cpus = sorted(os.sched_getaffinity(0))[:cores] if hasattr(os, "sched_getaffinity") else None
    exe = shutil.which("monoculture")
    cmd = [exe, "demo", "-o", str(out)] if exe else [sys.executable, "-m", "monoculture.cli", "demo", "-o", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cpus:  # at once, while Python is still starting: every thread it makes later inherits this
        os.sched_setaffinity(proc.pid, cpus)
    phases = []
    for line in proc.stderr:
        if line.startswith(PHASES):
            phases.append((time.perf_counter() - t0, line.strip()))
    stdout = proc.stdout.read()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"monoculture demo exited {rc}:\n{stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, phases, stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2, help="CPUs to pin the demo to (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the demo folder and print where it is")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    out = tmp / "monoculture-demo"
    try:
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        wall, cpu, phases, stdout = run(out, args.cores)
        print(stdout.rstrip())
        print()
        for t, line in phases:
            print(f"  {t:6.1f} s  {line}")
        rerun_wall, rerun_cpu, _, _ = run(out, args.cores)
        load_after = os.getloadavg() if hasattr(os, "getloadavg") else None
        print(
            f"fresh run: {wall:.1f} s wall, {cpu:.1f} s CPU on {args.cores} cores; rerun: {rerun_wall:.1f} s wall, {rerun_cpu:.1f} s CPU"
        )
        if load is not None:
            print(
                f"load average before/after: {load[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs "
                "(a busy machine stretches the wall time beyond the CPU time)"
            )
        ok = wall < TARGET_S
        print(f"{'within' if ok else 'OUTSIDE'} target (fresh run < {TARGET_S:.0f} s)")
        if args.keep:
            print(f"kept {out}")
        return 0 if ok else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
