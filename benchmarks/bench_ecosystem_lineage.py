"""How long ecosystem watch takes on a Hub-sized derivative graph.

A full fetch of the big families brings hundreds of thousands of derivative links, so the lineage
walk, the cycle check and the origin attribution must stay near-linear. Run:

    python benchmarks/bench_ecosystem_lineage.py [n_models]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from monoculture.ecosystem.lineage import Lineage, topmost_owned_ancestors


def synthetic_edges(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """A forest under 20 family roots: each new model picks an earlier one as its base (preferential
    towards roots), a few are merges of two bases, and a few links point backwards to make cycles."""
    rng = np.random.default_rng(seed)
    rels = np.array(["finetune", "adapter", "quantized", "merge"])
    edges = []
    for i in range(20, n):
        parent = int(rng.integers(0, 20)) if rng.random() < 0.6 else int(rng.integers(0, i))
        edges.append((f"m{i}", f"m{parent}", str(rels[rng.choice(4, p=[0.55, 0.25, 0.17, 0.03])])))
        if rng.random() < 0.02:
            edges.append((f"m{i}", f"m{int(rng.integers(0, i))}", "merge"))
    for _ in range(n // 10_000 + 1):
        a = int(rng.integers(20, n))
        edges.append((f"m{int(rng.integers(0, 20))}", f"m{a}", "finetune"))  # a cycle through a root
    return edges


def main(n: int = 200_000) -> None:
    edges = synthetic_edges(n)
    t = time.perf_counter()
    g = Lineage.from_edges(edges)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    summ = g.summary([f"m{i}" for i in range(5)])
    t_summary = time.perf_counter() - t
    owner = lambda m: "fam" if int(m[1:]) < 20 else None  # noqa: E731
    t = time.perf_counter()
    for i in range(20, 20 + 10_000):
        topmost_owned_ancestors(g, f"m{i}", owner)
    t_origin = time.perf_counter() - t
    print(f"{len(edges):,} links, {len(g.broken)} cycle links dropped")
    print(f"build + cycle check   {t_build:6.2f} s")
    print(f"summary of 5 roots    {t_summary:6.2f} s  ({summ['transitive']:,} descendants, depth {summ['max_depth']})")
    print(f"origins of 10k models {t_origin:6.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
