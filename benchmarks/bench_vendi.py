"""Vendi score of one large pool: the d x d form against the n x n kernel.

Run on demand: ``python benchmarks/bench_vendi.py [--n 10000] [--d 384]``. The baseline is the
direct definition (eigenvalues of the n x n kernel K / n); both are timed in the same run, so
the ratio does not depend on how busy the machine is as much as the raw times do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from monoculture.metrics.vendi import vendi_score  # noqa: E402

TARGET = 50.0


def vendi_nxn(X: np.ndarray, q: float = 1.0) -> float:
    """Baseline: the n x n kernel, decomposed directly."""
    n = X.shape[0]
    lam = np.linalg.eigvalsh((X @ X.T) / n)
    lam = lam[lam > 0]
    if q == 1.0:
        return float(np.exp(-np.sum(lam * np.log(lam))))
    if np.isinf(q):
        return float(1.0 / lam.max())
    return float(np.exp(np.log(np.sum(lam**q)) / (1.0 - q)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--q", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of the fast path (best is kept)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.n, args.d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)

    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        fast = vendi_score(X, q=args.q)
        times.append(time.perf_counter() - t)
    t_fast = min(times)

    print(f"Vendi score of {args.n} x {args.d} random unit embeddings, q = {args.q}")
    print(f"  d x d form (monoculture.metrics.vendi_score): {t_fast * 1e3:9.1f} ms  (best of {args.repeat})", flush=True)
    t = time.perf_counter()
    slow = vendi_nxn(X, args.q)
    t_slow = time.perf_counter() - t
    print(f"  n x n eigendecomposition baseline:            {t_slow * 1e3:9.1f} ms")
    ratio = t_slow / t_fast
    diff = abs(fast - slow)
    print(f"  speed ratio: {ratio:.0f}x  (target >= {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'})")
    print(f"  values: {fast:.10f} vs {slow:.10f}  |diff| = {diff:.2e}  ({'agree' if diff <= 1e-6 * slow else 'DISAGREE'})")
    return 0 if diff <= 1e-6 * slow else 1


if __name__ == "__main__":
    raise SystemExit(main())
