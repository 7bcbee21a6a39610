"""Coverage of the loop intervals: resampling chains one by one against resampling seeds.

Run on demand: ``python benchmarks/loop_interval_coverage.py [--studies 400] [--seeds 20] [--reps 5]
[--seed-sd 3] [--chain-sd 3] [-B 400]``.

Each synthetic study has ``--seeds`` seeds with ``--reps`` replicate chains each, and
x_T = a + b x_0 + u_seed + e_chain (a = 2, b = 0.5, x_0 ~ N(0, 10) per seed, u ~ N(0, seed_sd)
shared by a seed's chains, e ~ N(0, chain_sd) per chain): replicates share their seed's x_0
and u, as real replicate chains share the seed text. Prints how often the 95% interval holds the
truth for the attractor's strength 1 - |b| and position a / (1 - b), the trajectory mean at
step 1 (a + b E[x_0]) and an unpaired strength difference (against a model with b = 0.8 on other
seeds), with chains resampled one by one and with seeds resampled, each with all its chains
(what monoculture.loops.attractors and loops.summary do). docs/loops.md carries the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from monoculture.loops.attractors import ChainValues, fit_attractor, paired_difference  # noqa: E402
from monoculture.loops.summary import trajectories  # noqa: E402

A, B_SLOPE, B_OTHER = 2.0, 0.5, 0.8


def simulate(rng, seeds: int, reps: int, seed_sd: float, chain_sd: float, b: float = B_SLOPE):
    x0 = rng.normal(0.0, 10.0, seeds)
    x = np.repeat(x0, reps)
    y = A + b * x + np.repeat(rng.normal(0, seed_sd, seeds), reps) + rng.normal(0, chain_sd, seeds * reps)
    return x, y, np.repeat(np.arange(seeds), reps).astype(str)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=400)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed-sd", type=float, default=3.0)
    ap.add_argument("--chain-sd", type=float, default=3.0)
    ap.add_argument("-B", "--bootstrap", type=int, default=400)
    args = ap.parse_args()
    S, R, B = args.seeds, args.reps, args.bootstrap
    truth = {
        "strength": 1 - abs(B_SLOPE),
        "position": A / (1 - B_SLOPE),
        "trajectory mean": A,
        "strength difference": (1 - B_SLOPE) - (1 - B_OTHER),
    }
    hits = {(k, how): 0 for k in truth for how in ("chains", "seeds")}
    t0 = time.perf_counter()
    chain = np.arange(S * R).astype(str)
    with threadpool_limits(1):
        for k in range(args.studies):
            rng = np.random.default_rng(k)
            x, y, seeds = simulate(rng, S, R, args.seed_sd, args.chain_sd)
            x2, y2, seeds2 = simulate(rng, S, R, args.seed_sd, args.chain_sd, b=B_OTHER)
            frame = pd.DataFrame(
                {"label": "m", "task": "t", "chain_id": np.r_[chain, chain], "step": np.repeat([0, 1], S * R), "v": np.r_[x, y]}
            )
            for how, clusters, other in (("chains", chain, np.char.add("o", chain)), ("seeds", seeds, np.char.add("o", seeds2))):
                fit = fit_attractor(x, y, None, bootstrap=B, rng=np.random.default_rng(10_000 + k), clusters=clusters)
                lo, hi = fit["ci"]
                hits["strength", how] += lo <= truth["strength"] <= hi
                lo, hi = fit["position_ci"]
                hits["position", how] += lo is not None and lo <= truth["position"] <= hi
                rows = trajectories(frame.assign(seed_id=np.r_[clusters, clusters]), ["v"], bootstrap=B, seed=k)
                lo, hi = next(r for r in rows if r["step"] == 1)["ci"]
                hits["trajectory mean", how] += lo <= truth["trajectory mean"] <= hi
                d = paired_difference(
                    ChainValues(chain, np.char.add("a", clusters), x, y, 1, 0, 0),
                    ChainValues(chain, other, x2, y2, 1, 0, 0),
                    bootstrap=B,
                    permutations=0,
                    rng=np.random.default_rng(20_000 + k),
                )
                lo, hi = d["ci"]
                hits["strength difference", how] += lo <= truth["strength difference"] <= hi
    n = args.studies
    print(
        f"{n} studies of {S} seeds x {R} chains, seed sd {args.seed_sd}, chain sd {args.chain_sd}, B = {B} "
        f"({time.perf_counter() - t0:.0f} s): share of 95% intervals holding the truth"
    )
    print(f"{'interval':<22}{'chains resampled':>18}{'seeds resampled':>18}")
    for key in truth:
        print(f"{key:<22}{hits[key, 'chains'] / n:>18.3f}{hits[key, 'seeds'] / n:>18.3f}")


if __name__ == "__main__":
    main()
