"""Issue 13, must show 3: our attractors of the shared TelephoneGame subset beside the published ones.

Run on demand: ``python benchmarks/telephone_attractors.py [--results DIR] [--store FILE] [-B 1000] [--markdown]``.

Imports ../shared/data/telephone/Results (or $MONOCULTURE_SHARED_DATA/telephone/Results) with
``monoculture loop import telephone`` into --store (default a temporary file; a second run into
the same store adds nothing), scores the seed, first and final texts of every chain with the
built-in scorers (positivity: vaderSentiment; difficulty: Gunning fog, textstat 0.7.3; length:
characters without hashtags) and fits the attractors with monoculture.loops.attractors, x = the
seed and x = the first generation. Prints, per model, task and property: our strength with its
95% bootstrap interval over chains and our position for both x, the x the paper used, the
published strength (Perez et al. 2024, the two instruct models) and the difference. The
Mixtral base model has no published figure here and is shown for ours only. ``--markdown``
prints the table docs/loops.md carries. Without the data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from monoculture.loops.telephone import import_telephone, published_comparison  # noqa: E402
from monoculture.store import Store  # noqa: E402
from monoculture.terminal import stdout_console  # noqa: E402


def default_results() -> Path:
    env = os.environ.get("MONOCULTURE_SHARED_DATA")
    base = Path(env) if env else REPO.parent / "shared" / "data"
    return base / "telephone" / "Results"


def _num(v, digits: int = 2) -> str:
    return "—" if v is None or v != v else f"{v:.{digits}f}"


def _ci(ci) -> str:
    lo, hi = ci if ci is not None else (None, None)
    return "—" if lo is None else f"[{lo:.2f}, {hi:.2f}]"


def _pos(v, prop: str) -> str:
    if v is None or v != v:
        return "—"
    return f"{v:.2f}" if prop == "positivity" else f"{v:.1f}" if prop == "difficulty" else f"{v:.0f}"


def markdown(df) -> str:
    head = (
        "| model | property | task | published | ours (paper's x) | 95% interval | ours, x = seed | position, x = seed "
        "| ours, x = first | position, x = first |\n"
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n"
    )
    lines = []
    for r in df.itertuples(index=False):
        lines.append(
            f"| {r.model} | {r.property} | {r.task} | {_num(r.published)} | {_num(r.ours)} (x = {r.paper_x}) "
            f"| {_ci(r.ci_seed if r.paper_x == 'seed' else r.ci_first)} | {_num(r.strength_seed)} | {_pos(r.position_seed, r.property)} "
            f"| {_num(r.strength_first)} | {_pos(r.position_first, r.property)} |"
        )
    return head + "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=default_results(), help="a TelephoneGameLLM Results/ folder")
    ap.add_argument("--store", type=Path, default=None, help="DuckDB store (default: a temporary file)")
    ap.add_argument("-B", "--bootstrap", type=int, default=1000)
    ap.add_argument("--markdown", action="store_true", help="print the docs table")
    args = ap.parse_args()
    console = stdout_console()
    if not args.results.is_dir():
        console.print(f"no TelephoneGame data at {args.results}: nothing to compare", markup=False)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "telephone.duckdb"
        t0 = time.perf_counter()
        with Store(path) as st:
            n = import_telephone(st, args.results)
            t1 = time.perf_counter()
            df = published_comparison(st, bootstrap=args.bootstrap)
        t2 = time.perf_counter()
    console.print(
        f"imported {n['chains']} chains, {n['steps']} steps ({n['new_steps']} new, {n['empty_texts']} empty) in {t1 - t0:.1f} s; "
        f"scored and fitted in {t2 - t1:.1f} s (bootstrap {args.bootstrap})",
        markup=False,
    )
    if args.markdown:
        console.print(markdown(df), markup=False, highlight=False, soft_wrap=True)
    else:
        from rich.table import Table

        table = Table(
            "model",
            "property",
            "task",
            "published",
            "ours",
            "x",
            "95% CI",
            "seed: strength",
            "position",
            "first: strength",
            "position",
        )
        for r in df.itertuples(index=False):
            ci = r.ci_seed if r.paper_x == "seed" else r.ci_first
            table.add_row(
                r.model, r.property, r.task, _num(r.published), _num(r.ours), r.paper_x, _ci(ci),
                _num(r.strength_seed), _pos(r.position_seed, r.property), _num(r.strength_first), _pos(r.position_first, r.property),
            )  # fmt: skip
        console.print(table)
    pub = df[df["published"].notna()]
    diff = pub["difference"].abs()
    console.print(
        f"{len(pub)} published cells: published inside our 95% interval in {int(pub['published_in_ci'].sum())}; "
        f"|ours - published| <= 0.20 in {int((diff <= 0.20).sum())}, mean |difference| {diff.mean():.3f} "
        f"(positivity and difficulty {diff[pub['property'] != 'length'].mean():.3f}, length {diff[pub['property'] == 'length'].mean():.3f}; "
        f"ours above published in {int((pub[pub['property'] == 'length']['difference'] > 0).sum())} of 6 length cells)",
        markup=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
