"""Speed and agreement against the anchors' own packages: vendi-score and diversity.

Run on demand: ``python benchmarks/bench_anchors.py [--boot 1000]``, with the two packages
importable (``pip install 'monoculture[bench]'`` in an environment of its own; see
docs/speed.md for why not in the dev one, and ``--no-deps`` into a folder on PYTHONPATH works).

Data: the real AlpacaEval outputs in shared/data/alpaca_eval (28 models x 805 prompts), embedded
once with TF-IDF + SVD exactly as bench_measure.py does (cached under ~/.cache/monoculture/bench).

What each side computes, on the same rows:

* Vendi per prompt and leave-one-out for every model. vendi-score as its README shows it: one
  ``vendi.score_K`` call per pool on that pool's kernel (the prompt's Gram matrix, sliced for each
  leave-one-out pool), 805 x (1 + 28) calls. With one answer per model, uniform weights are the
  library's equal model weights. ``score_dual`` (the d x d form) is timed on a sample of prompts
  and extrapolated: with 28 answers and d = 384 it is the slower of the two here.
  Ours: ``voices_analysis``: each prompt's pool decomposed once, every model's leave-one-out from
  that decomposition (metrics/vendi_loo.py: the removed row's secular equation, compiled).
* Lexical, the ``diversity`` package's ``ngram_diversity_score``, ``self_repetition_score`` and
  ``compression_ratio`` over the sets measure reports (one per model, one per model and prompt)
  against ``metrics.lexical``. Their definitions differ from METRICS.md, so agreement is checked
  on inputs where they coincide (see ``agreement_lexical``) and the difference is stated where
  they never do (compression).
* The whole measure step (``measure_all``, all metrics, B = 1000) is timed and printed beside both.

Where a target is not met, the floor that stops it is measured and printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_measure import real  # noqa: E402
from numba import njit  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from monoculture.metrics import measure_all  # noqa: E402
from monoculture.metrics.lexical import _compression_ratios, _count_passes, _members, _tokenize_all, lexical_table  # noqa: E402
from monoculture.metrics.responses import index_cells  # noqa: E402
from monoculture.metrics.segment import tokenize  # noqa: E402
from monoculture.metrics.vendi_loo import loo_vendi_pools  # noqa: E402
from monoculture.metrics.voices import voices_analysis  # noqa: E402

TARGET = 10.0
VENDI_TOL = 1e-9  # both are exact eigendecompositions in float64
NGRAM_TOL = 1.25e-4 + 1e-12  # diversity rounds its sum over n = 1..4 to 3 decimals: 5e-4 / 4 on the mean
SELFREP_TOL = 1e-12


def load_anchors():
    """vendi_score.vendi, and the three diversity modules loaded from their files: the package's
    __init__ imports sentence-transformers, evaluate and OpenAI clients that these functions do
    not use (and that pin transformers < 5)."""
    try:
        from vendi_score import vendi
    except ImportError as exc:
        raise SystemExit("vendi-score is not importable: pip install 'monoculture[bench]' (docs/speed.md)") from exc
    spec = importlib.util.find_spec("diversity")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("diversity is not importable: pip install 'monoculture[bench]' (docs/speed.md)")
    root = Path(next(iter(spec.submodule_search_locations)))
    mods = {}
    for name in ("compression", "ngram_diversity", "self_repetition"):
        s = importlib.util.spec_from_file_location(f"_diversity_{name}", root / f"{name}.py")
        assert s is not None and s.loader is not None
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
        mods[name] = mod
    return vendi, mods


# ----------------------------------------------------------------------------- Vendi


def vendi_theirs(vendi, X: np.ndarray, pools: list[np.ndarray], M: int, model: np.ndarray):
    V = np.full(len(pools), np.nan)
    loo = np.full((len(pools), M), np.nan)
    for p, rows in enumerate(pools):
        if len(rows) < 2:
            continue
        K = X[rows] @ X[rows].T
        V[p] = vendi.score_K(K)
        for j, m in enumerate(model[rows]):
            keep = np.arange(len(rows)) != j
            loo[p, m] = V[p] - vendi.score_K(K[np.ix_(keep, keep)])
    return V, loo


def vendi_dual_sample(vendi, X, pools, n_prompts: int) -> float:
    """Seconds per prompt (pool + its leave-one-out pools) with score_dual."""
    t = time.perf_counter()
    for rows in pools[:n_prompts]:
        vendi.score_dual(X[rows])
        for j in range(len(rows)):
            vendi.score_dual(X[np.delete(rows, j)])
    return (time.perf_counter() - t) / n_prompts


def eig_floor(X, pools) -> tuple[float, float]:
    """The eigendecompositions alone of every pool and every leave-one-out pool (prebuilt, one
    batched LAPACK call per pool size): what a method that decomposes each pool pays at least.
    Ours decomposes only the full pools."""
    stacks: dict[int, list[np.ndarray]] = {}
    for rows in pools:
        if len(rows) < 2:
            continue
        K = X[rows] @ X[rows].T / len(rows)
        stacks.setdefault(len(rows), []).append(K)
        n = len(rows) - 1
        for j in range(len(rows)):
            keep = np.arange(len(rows)) != j
            stacks.setdefault(n, []).append(K[np.ix_(keep, keep)] * (len(rows) / n))
    arrays = [np.stack(v) for v in stacks.values()]
    t, c = time.perf_counter(), time.process_time()
    for a in arrays:
        np.linalg.eigvalsh(a)
    return time.perf_counter() - t, time.process_time() - c


@njit(cache=True)
def _division_loop(x, reps):  # pragma: no cover - compiled
    s = 0.0
    for r in range(reps):
        t = 0.5 + r * 1e-9
        for i in range(x.size):
            s += 1.0 / (x[i] - t)
    return s


def loo_floor(X, pools) -> dict[str, float]:
    """What our leave-one-out path cannot do without, measured: the eigendecomposition (with
    vectors) of every full pool, and the divisions its roots take (one per pole per evaluation
    of the secular function, counted on these pools) at this machine's rate for a division
    and its running sum, timed in the same run."""
    by_n: dict[int, list[np.ndarray]] = {}
    for rows in pools:
        if len(rows) >= 2:
            by_n.setdefault(len(rows), []).append(X[rows] @ X[rows].T / len(rows))
    stacks = [np.stack(v) for v in by_n.values()]
    t, c = time.perf_counter(), time.process_time()
    for K in stacks:
        np.linalg.eigh(K)
    eigh_wall, eigh_cpu = time.perf_counter() - t, time.process_time() - c
    count = np.zeros(2, dtype=np.int64)
    divisions = 0
    for K in stacks:
        n = K.shape[1]
        before = int(count[1])
        loo_vendi_pools(K, np.tile(np.arange(n), (len(K), 1)), np.full(len(K), n / (n - 1)), count=count)
        divisions += (int(count[1]) - before) * n  # every evaluation sums over n poles (no merging here)
    x = np.linspace(1.0, 2.0, 28)
    _division_loop(x, 10)
    reps = 2_000_000
    c = time.process_time()
    _division_loop(x, reps)
    per_division = (time.process_time() - c) / (reps * x.size)
    return {
        "eigh_wall": eigh_wall,
        "eigh_cpu": eigh_cpu,
        "roots": float(count[0]),
        "evaluations": float(count[1]),
        "divisions": float(divisions),
        "ns_per_division": per_division * 1e9,
        "divisions_cpu": divisions * per_division,
    }


# ----------------------------------------------------------------------------- lexical


class Clock:
    """Wall and process CPU seconds of a block: on a shared machine CPU seconds are the steadier
    figure, and both are printed."""

    def __enter__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def lexical_theirs(mods, model_sets: list[list[str]], cell_sets: list[list[str]]) -> tuple[Clock, Clock, Clock]:
    ng, sr = mods["ngram_diversity"], mods["self_repetition"]
    with Clock() as t_ng:
        for s in model_sets + cell_sets:
            try:
                ng.ngram_diversity_score(s, 4)
            except ZeroDivisionError:  # fewer than 4 words: no value, as ours says NaN
                pass
    with Clock() as t_sr:
        for s in model_sets:  # a one-text set has no self-repetition (ours: NaN)
            sr.self_repetition_score(s, 4, verbose=False)
    with Clock() as t_gz:
        for s in model_sets + cell_sets:
            mods["compression"].compression_ratio(s)
    return t_ng, t_sr, t_gz


def lexical_ours_parts(texts, sids, sizes) -> tuple[Clock, Clock, Clock, Clock, Clock]:
    """Our lexical step split as lexical_table runs it: tokenising (and, within it, the regex
    tokeniser on the non-ASCII texts alone), then counting (every n-gram order and
    self-repetition at both levels); gzip level 9 on its own. First, the compiled kernels are
    loaded from numba's cache (compiled, the first time on a machine) by a call on two texts,
    timed on its own: a process pays it once, not per call."""
    with Clock() as t_load:
        lexical_table(texts[:2], [np.zeros(2, dtype=np.int64)], [1])
    has = np.fromiter((isinstance(t, str) for t in texts), dtype=bool, count=len(texts))
    uses = [has & (sid >= 0) for sid in sids]
    results: list[dict] = [{} for _ in sids]
    with Clock() as t_tok:
        tok, lens, _ = _tokenize_all(texts, has)
    with Clock() as t_regex:
        for t in texts:
            if isinstance(t, str) and not t.isascii():
                tokenize(t)
    with Clock() as t_count:
        _count_passes(tok, lens, sids, uses, sizes, results)
    with Clock() as t_gz:
        for sid, use, S in zip(sids, uses, sizes):
            _compression_ratios(_members(texts, sid, use, S))
    return t_load, t_tok, t_regex, t_count, t_gz


def agreement_lexical(mods, texts, model, prompt, M, P) -> dict[str, tuple[float, int, float | None]]:
    """Max |ours - theirs| where the definitions coincide.

    * n-gram diversity: diversity splits the space-joined texts on ' ' (no lowercasing, n-grams
      across text boundaries) and sums n = 1..4; METRICS.md lowercases word tokens, stays within
      a text and takes the mean. They coincide on one-text sets given our tokens joined by single
      spaces: every (model, prompt) cell with >= 4 tokens; theirs / 4 against ours.
    * self-repetition: diversity adds, per text, how often each of its 4-grams occurs in other
      texts and scores texts without 4-grams as 0; METRICS.md counts the text's distinct 4-grams
      that occur in another text and leaves 4-gram-less texts out. They coincide on two-text sets
      of texts with >= 4 tokens: the first two models' answers to each prompt, pre-tokenised.
    * compression ratio: diversity joins with ' ', gzips the gzip output again (it writes
      gzip.compress(...) into a GzipFile) and rounds to 3 decimals; METRICS.md joins with '\n'
      and gzips once. They never coincide: the difference over the per-model sets is reported.
    """
    ng, sr, cz = mods["ngram_diversity"], mods["self_repetition"], mods["compression"]
    toks = [tokenize(t) for t in texts]
    out = {}
    cells = [i for i in range(len(texts)) if len(toks[i]) >= 4]
    ours = lexical_table([texts[i] for i in cells], [np.arange(len(cells))])[0]["ngram_div_mean"].to_numpy()
    theirs = np.array([ng.ngram_diversity_score([" ".join(toks[i])], 4) / 4 for i in cells])
    out["ngram_div_mean (one-text cells)"] = (float(np.max(np.abs(ours - theirs))), len(cells), NGRAM_TOL)
    by = {(int(m), int(p)): i for i, (m, p) in enumerate(zip(model, prompt))}
    pairs = [
        (by[(0, p)], by[(1, p)])
        for p in range(P)
        if (0, p) in by and (1, p) in by and min(len(toks[by[(0, p)]]), len(toks[by[(1, p)]])) >= 4
    ]
    flat = [texts[i] for ab in pairs for i in ab]
    ours = lexical_table(flat, [np.repeat(np.arange(len(pairs)), 2)])[0]["self_repetition"].to_numpy()
    theirs = np.array([sr.self_repetition_score([" ".join(toks[a]), " ".join(toks[b])], 4, verbose=False) for a, b in pairs])
    out["self_repetition (two-text sets)"] = (float(np.max(np.abs(ours - theirs))), len(pairs), SELFREP_TOL)
    sets = [[texts[i] for i in np.flatnonzero(model == m)] for m in range(M)]
    ours = lexical_table([t for s in sets for t in s], [np.repeat(np.arange(M), [len(s) for s in sets])])[0]["compression_ratio"]
    theirs = np.array([cz.compression_ratio(s) for s in sets])
    rel = np.abs(theirs - ours.to_numpy()) / ours.to_numpy()
    out["compression_ratio (per model)"] = (float(np.max(rel)), M, None)  # definitions differ: relative difference
    return out


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dual-prompts", type=int, default=20, help="prompts timed with score_dual (extrapolated)")
    ap.add_argument("--parts", default="vendi,lexical,measure", help="which comparisons to run")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    vendi, mods = load_anchors()
    rs, groups, derivatives = real(seed=args.seed)
    M, P = len(rs.model_names), len(rs.prompt_ids)
    cores = os.cpu_count() or 1
    X = np.asarray(rs.X, dtype=np.float64)
    model, prompt = np.asarray(rs.model), np.asarray(rs.prompt)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"AlpacaEval: {M} models x {P} prompts, {rs.n} non-empty answers, d = {X.shape[1]}, {cores} cores, load {load:.1f}",
        flush=True,
    )
    ok = True

    if "vendi" in parts:
        index = index_cells(model, prompt, M, P, None)
        order = np.lexsort((model, prompt))
        pools = np.split(order, np.cumsum(np.bincount(prompt[order], minlength=P))[:-1])
        with threadpool_limits(1):
            # The first call in a process loads the compiled kernels from numba's cache (or
            # compiles them, once per installation): timed on its own.
            first = index_cells(model[:100], prompt[:100], M, P, None)
            with Clock() as warm:
                voices_analysis(X[:100], first)
            with Clock() as ours:
                vr = voices_analysis(X, index)
            with Clock() as theirs:
                V_t, loo_t = vendi_theirs(vendi, X, pools, M, model)
            dual = vendi_dual_sample(vendi, X, pools, args.dual_prompts) * P
            floor, c_floor = eig_floor(X, pools)
            ours_floor = loo_floor(X, pools)
        n_calls = sum(1 + len(r) for r in pools if len(r) >= 2)
        dv = max(float(np.nanmax(np.abs(vr.voices - V_t))), float(np.nanmax(np.abs(vr.loo - loo_t))))
        same_nan = np.array_equal(np.isnan(vr.loo), np.isnan(loo_t)) and np.array_equal(np.isnan(vr.voices), np.isnan(V_t))
        ratio, c_ratio = theirs.wall / ours.wall, theirs.cpu / ours.cpu
        print(f"Vendi per prompt + leave-one-out for every model (one BLAS thread each; ours in up to {min(4, cores)} threads):")
        print(f"  vendi-score score_K, one call per pool ({n_calls} calls): {theirs.wall:7.2f} s ({theirs.cpu:.2f} CPU s)")
        print(f"  vendi-score score_dual, same pools (from {args.dual_prompts} prompts):  {dual:7.1f} s")
        print(
            f"  monoculture voices_analysis:                        {ours.wall:7.2f} s ({ours.cpu:.2f} CPU s); "
            f"its first call in a process (loading the compiled kernels) {warm.wall:.2f} s, not counted"
        )
        met = max(ratio, c_ratio) >= TARGET
        print(
            f"  speed ratio against score_K {ratio:.1f}x wall, {c_ratio:.1f}x CPU; against score_dual {dual / ours.wall:.0f}x "
            f"(target >= {TARGET:.0f}x: {'met' if met else 'NOT met'})"
        )
        fl = ours_floor
        print(
            f"  a pool-by-pool method's floor: the {n_calls} eigendecompositions alone, batched: {floor:.2f} s ({c_floor:.2f} CPU s), "
            f"a cap of {theirs.wall / floor:.1f}x wall, {theirs.cpu / max(c_floor, 1e-9):.1f}x CPU"
        )
        print(
            f"  ours, by what it cannot skip: the {len(pools)} pools' eigendecompositions with vectors {fl['eigh_cpu']:.2f} CPU s; "
            f"{fl['roots']:.0f} roots, {fl['evaluations'] / max(fl['roots'], 1):.2f} evaluations each, {fl['divisions'] / 1e6:.1f} M divisions "
            f"at {fl['ns_per_division']:.2f} ns = {fl['divisions_cpu']:.2f} CPU s; together a cap of "
            f"{theirs.cpu / (fl['eigh_cpu'] + fl['divisions_cpu']):.1f}x CPU"
        )
        print(
            f"  agreement: max |ours - theirs| over V(p) and L_m(p) = {dv:.1e} (tolerance {VENDI_TOL:g}), same missing cells: {same_nan}"
        )
        ok &= dv <= VENDI_TOL and same_nan

    texts = list(rs.texts or [])
    if "lexical" in parts:
        cell_of_row = np.arange(len(texts))  # AlpacaEval: one answer per (model, prompt)
        sids, sizes = [model, cell_of_row], [M, len(texts)]
        model_sets = [[texts[i] for i in np.flatnonzero(model == m)] for m in range(M)]
        cell_sets = [[t] for t in texts]
        t_load, t_tok, t_regex, t_count, gz_ours = lexical_ours_parts(texts, sids, sizes)
        t_ng, t_sr, gz_theirs = lexical_theirs(mods, model_sets, cell_sets)
        ours_w, ours_c = t_tok.wall + t_count.wall, t_tok.cpu + t_count.cpu
        th_w, th_c = t_ng.wall + t_sr.wall, t_ng.cpu + t_sr.cpu
        print(
            f"Lexical over {M} per-model sets and {len(texts)} per-(model, prompt) sets, {sum(map(len, texts)) / 1e6:.0f} MB of text:"
        )
        print(
            f"  diversity: ngram_diversity_score {t_ng.wall:.1f} s ({t_ng.cpu:.1f} CPU s), "
            f"self_repetition_score on the per-model sets {t_sr.wall:.1f} s ({t_sr.cpu:.1f} CPU s)"
        )
        n_plain = sum(isinstance(t, str) and t.isascii() for t in texts)
        print(
            f"  monoculture: tokenise {t_tok.wall:.2f} s ({t_tok.cpu:.2f} CPU s; of it the regex tokeniser on the "
            f"{len(texts) - n_plain} non-ASCII texts {t_regex.cpu:.2f} CPU s, the {n_plain} ASCII ones are scanned compiled) "
            f"+ count every order and self-repetition at both levels {t_count.wall:.2f} s ({t_count.cpu:.2f} CPU s); "
            f"numba kernels loaded (compiled if not cached) once per process: {t_load.wall:.2f} s, not counted"
        )
        met = max(th_w / ours_w, th_c / ours_c) >= TARGET
        floor, what = max((t_tok.cpu, "tokenising"), (t_count.cpu, "counting"))
        print(
            f"  speed ratio {th_w / ours_w:.1f}x wall, {th_c / ours_c:.1f}x CPU (target >= {TARGET:.0f}x: {'met' if met else 'NOT met'}); "
            f"floor: our {what} alone, {floor:.2f} CPU s, caps it at {th_c / floor:.0f}x CPU"
        )
        print(
            f"  gzip, which both sides pay: diversity's compression_ratio {gz_theirs.wall:.1f} s ({gz_theirs.cpu:.1f} CPU s), "
            f"ours (level 9, in threads) {gz_ours.wall:.1f} s ({gz_ours.cpu:.1f} CPU s)"
        )
        print("  agreement where the definitions coincide (docstring of agreement_lexical):")
        for key, (diff, n, tol) in agreement_lexical(mods, texts, model, prompt, M, P).items():
            good = tol is None or diff <= tol
            ok &= good
            print(
                f"    {key:34s} {diff:.1e} over {n} sets ({'definitions differ: relative difference' if tol is None else f'tolerance {tol:.12g}'}) {'ok' if good else 'DIFFERENT'}"
            )

    if "measure" in parts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Clock() as whole:
                res = measure_all(rs, groups=groups, derivatives=derivatives, n_boot=args.boot, seed=args.seed)
        n_groups = sum(len(set(g.values())) for g in groups.values())
        print(f"Whole measure step (measure_all, all metrics, B = {args.boot}, LOO for every model, {n_groups} groups):")
        print(
            f"  {whole.wall:.1f} s ({whole.cpu:.1f} CPU s); by stage: "
            + ", ".join(f"{k} {v:.2f}" for k, v in res.timings.items())
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
