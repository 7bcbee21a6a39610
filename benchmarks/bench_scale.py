"""Time and peak memory of the whole measure step as the number of models grows.

Run on demand: ``python benchmarks/bench_scale.py [--sizes 28,70,140,280] [--prompts 805]
[--boot 1000] [--permutations 999] [--memory-prompts 40]``.

Each size is bench_measure.py's synthetic AlpacaEval-shaped study (families of the 28-model
pattern repeated, 384-d embeddings, random-word texts so the lexical figures run too), written
to a temporary folder by one process and measured by another, so that the peak resident memory
(``ru_maxrss`` of the measuring process: tracemalloc misses numpy's and BLAS's own buffers) is
the measure step's, not the generator's. Per size it prints seconds per stage, the growth
exponent of each stage between consecutive sizes and over the whole range (log-log slope), the
number of logistic-regression fits separability made (pairwise AUCs come from the fold's one
multinomial fit, so 5 whatever the number of models, against 5 M (M - 1) / 2 for one
classifier per pair), and the peak memory.

Every stage is linear in the number of prompts (each prompt's pools are independent, the
bootstrap is a (B, P) product, the fits are linear in rows), so ``--prompts`` below 805 keeps
the exponents in M and the stage times scale to 805 prompts by P; ``--memory-prompts`` adds a
second, smaller run of the largest size so that the peak memory at 805 prompts is extrapolated
from two measured points (memory is affine in P) as well as measured where it was run.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LIMIT_GIB = 8.0
STAGE_KEYS = ("similarity", "voices", "separability", "bootstrap", "lineage", "lexical")


def generate(M: int, P: int, folder: Path, seed: int) -> None:
    sys.path.insert(0, str(HERE))
    from bench_measure import synthetic

    rs, groups, _ = synthetic(M=M, P=P, seed=seed, with_texts=True)
    np.savez(folder / "data.npz", X=rs.X, model=rs.model, prompt=rs.prompt)
    (folder / "meta.json").write_text(json.dumps({"names": rs.model_names, "prompts": rs.prompt_ids, "groups": groups}))
    (folder / "texts.json").write_text(json.dumps(rs.texts))


def measure(folder: Path, boot: int, perms: int, seed: int) -> dict:
    sys.path.insert(0, str(REPO / "src"))
    import monoculture.metrics.separability as sep
    from monoculture.metrics import ResponseSet, measure_all
    from monoculture.metrics.pipeline import _lexical
    from monoculture.metrics.responses import index_cells

    d = np.load(folder / "data.npz")
    meta = json.loads((folder / "meta.json").read_text())
    texts = json.loads((folder / "texts.json").read_text())
    rs = ResponseSet(d["X"], d["model"], d["prompt"], meta["names"], meta["prompts"], texts, np.zeros(len(texts), dtype=np.int64))
    fits = [0]
    real_fit = sep._fit

    def counting_fit(*a, **k):
        fits[0] += 1
        return real_fit(*a, **k)

    sep._fit = counting_fit
    t = time.perf_counter()
    res = measure_all(rs, groups=meta["groups"], n_boot=boot, n_perm=perms, seed=seed)
    total = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # The lexical figures run in a side thread during the other stages; their own cost, alone:
    M, P = len(meta["names"]), len(meta["prompts"])
    index = index_cells(np.asarray(d["model"]), np.asarray(d["prompt"]), M, P, None)
    t = time.perf_counter()
    _lexical(texts, np.asarray(d["model"]), index, meta["names"])
    lex = time.perf_counter() - t
    tm = dict(res.timings)
    stages = {
        "similarity": tm.get("prepare", 0.0) + tm.get("similarity", 0.0),
        "voices": tm.get("voices", 0.0),
        "separability": tm.get("separability", 0.0),
        "bootstrap": tm.get("bootstrap", 0.0),
        "lineage": tm.get("lineage", 0.0),
        "lexical": lex,
    }
    n_groups = sum(len(set(g.values())) for g in meta["groups"].values())
    return {"M": M, "P": P, "total": total, "stages": stages, "rss": rss, "fits": fits[0], "groups": n_groups, "timings": tm}


def run_size(M: int, P: int, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        py = [sys.executable, __file__]
        subprocess.run(py + ["--_generate", str(M), str(P), tmp, "--seed", str(args.seed)], check=True)
        out = subprocess.run(
            py
            + ["--_measure", tmp, "--boot", str(args.boot), "--permutations", str(args.permutations), "--seed", str(args.seed)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs, ys) -> float:
    x, y = np.log(np.asarray(xs, float)), np.log(np.maximum(np.asarray(ys, float), 1e-9))
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else math.nan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="28,70,140,280")
    ap.add_argument("--prompts", type=int, default=805)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--memory-prompts", type=int, default=0, help="a second run of the largest size with this many prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--_generate", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._generate:
        generate(int(args._generate[0]), int(args._generate[1]), Path(args._generate[2]), args.seed)
        return 0
    if args._measure:
        print(json.dumps(measure(Path(args._measure), args.boot, args.permutations, args.seed)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    P = args.prompts
    print(f"synthetic AlpacaEval-shaped studies, {P} prompts, d = 384, texts, B = {args.boot}, {args.permutations} permutations")
    rows = []
    for M in sizes:
        r = run_size(M, P, args)
        rows.append(r)
        st = r["stages"]
        print(
            f"  M = {M:3d} ({r['groups']} groups): whole step {r['total']:7.1f} s, peak RSS {r['rss'] / 2**30:5.2f} GiB, "
            f"{r['fits']} logistic fits (one per pair would be {5 * M * (M - 1) // 2}); "
            + ", ".join(f"{k} {st[k]:.2f}" for k in STAGE_KEYS),
            flush=True,
        )
    if len(rows) >= 2:
        Ms = [r["M"] for r in rows]
        print("growth exponents (log-log slope of seconds against M; between consecutive sizes, then over all):")
        for k in STAGE_KEYS + ("total",):
            ys = [r["total"] if k == "total" else r["stages"][k] for r in rows]
            steps = [slope(Ms[i : i + 2], ys[i : i + 2]) for i in range(len(Ms) - 1)]
            print(f"    {k:13s} " + "  ".join(f"{s:5.2f}" for s in steps) + f"   all {slope(Ms, ys):5.2f}")
    big = rows[-1]
    scale = 805 / P
    if scale != 1:
        print(
            f"  at 805 prompts (x {scale:.2f}, every stage linear in P): M = {big['M']} whole step ~{big['total'] * scale:.0f} s"
        )
    peak = big["rss"] / 2**30
    if args.memory_prompts and args.memory_prompts != P:
        small = run_size(big["M"], args.memory_prompts, args)
        per_prompt = (big["rss"] - small["rss"]) / (P - args.memory_prompts)
        at805 = (big["rss"] + per_prompt * (805 - P)) / 2**30
        print(
            f"  peak RSS at M = {big['M']}: {small['rss'] / 2**30:.2f} GiB at {args.memory_prompts} prompts, {peak:.2f} GiB at {P}: "
            f"{per_prompt / 2**20:.2f} MiB per prompt, so {at805:.2f} GiB at 805 prompts"
        )
        peak = max(peak, at805)
    print(f"  peak memory {peak:.2f} GiB at {big['M']} models: {'under' if peak < LIMIT_GIB else 'OVER'} {LIMIT_GIB:.0f} GiB")
    print(f"  (this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB)")
    return 0 if peak < LIMIT_GIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
