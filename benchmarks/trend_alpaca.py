"""Issue 14, must show 3: the trend figures on the shared AlpacaEval outputs.

Run on demand: ``python benchmarks/trend_alpaca.py [--work DIR] [--period quarter] [-B 1000]``.

28 models x 805 prompts from ../shared/data/alpaca_eval/results (or $MONOCULTURE_SHARED_DATA),
imported with ``monoculture import alpaca-eval``, attributes from
examples/alpaca_eval_attributes.yaml, measured with ``--embedder tfidf``; release dates from the
shipped table (monoculture/trends/data/release_dates.csv and the demo's attributes). Prints every
series with its interval and every slope (per year) with its interval and permutation p. The
store lives under --work (default /tmp/monoculture-trend), so a second run only recomputes the
trend. Without the data it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from monoculture.measure import measure  # noqa: E402
from monoculture.results import list_runs  # noqa: E402
from monoculture.store import Store  # noqa: E402
from monoculture.trends.analysis import trend_analysis  # noqa: E402


def cli(*args: str) -> None:
    cmd = [sys.executable, "-c", "from monoculture.cli import app; app()", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"monoculture {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def measured_store(results: Path, work: Path) -> Path:
    """The AlpacaEval store with a tfidf measurement: made once, reused afterwards."""
    store = work / "alpaca-trend.duckdb"
    if store.exists():
        with Store(store, read_only=True) as st:
            if not list_runs(st).empty:
                return store
    work.mkdir(parents=True, exist_ok=True)
    cli("import", "alpaca-eval", str(results), "--store", str(store))
    cli("attributes", str(store), "--file", str(REPO / "examples" / "alpaca_eval_attributes.yaml"))
    with Store(store) as st:
        measure(st, embedder="tfidf", n_boot=200, show_progress=False)
    return store


def fmt(v, nd: int = 3) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/monoculture-trend"))
    ap.add_argument("--period", default="quarter", choices=["quarter", "half", "year"])
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("-B", "--bootstrap", type=int, default=1000)
    ap.add_argument("--permutations", type=int, default=999)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    base = Path(os.environ.get("MONOCULTURE_SHARED_DATA", REPO.parent / "shared" / "data"))
    results = base / "alpaca_eval" / "results"
    if not results.is_dir():
        print(f"AlpacaEval trend skipped: {results} is absent")
        return
    store = measured_store(results, a.work)
    t0 = time.perf_counter()
    with Store(store, read_only=True) as st:
        r = trend_analysis(
            st, period=a.period, window=a.window, n_boot=a.bootstrap, n_perm=a.permutations, seed=a.seed
        ).to_json_dict()
    took = time.perf_counter() - t0
    s = r["settings"]
    print(
        f"AlpacaEval trend: {r['dated']} dated models, {r['undated']['count']} undated ({', '.join(r['undated']['models'])}); "
        f"{s['prompts']} prompts; embedder {s['embedder']} ({'calibrated' if s['calibrated'] else 'raw'}); "
        f"period {s['period']}, window {s['window']}, n = {s['n']}; B = {s['n_boot']}, {s['permutations']} permutations "
        f"({s['voice_permutations']} for voices_equal_n); {took:.1f} s"
    )
    for name, points in r["series"].items():
        print(f"\n{name}")
        for p in points:
            who = p.get("label") or p["models"][0]
            extra = f" ({p['n_models']} models)" if "n_models" in p else ""
            print(f"  {p['date']}  {who:<24} {fmt(p['value'])} [{fmt(p['ci'][0])}, {fmt(p['ci'][1])}]{extra}")
    print("\nslopes per year (95% interval; two-sided permutation p; per-model series: excess over the shuffled-date drift)")
    for sl in r["slopes"]:
        few = " (few models)" if sl["few_models"] else ""
        raw = f"  raw {fmt(sl['raw'], 4)}, drift {fmt(sl['drift'], 4)}" if sl["tested"] != "slope" else ""
        print(
            f"  {sl['series']:<22} {sl['group'] or 'all':<20} {fmt(sl['value'], 4)} "
            f"[{fmt(sl['ci'][0], 4)}, {fmt(sl['ci'][1], 4)}]  p = {fmt(sl['p'])}  models {sl['models']}{few}{raw}"
        )
    for n in r["notes"]:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
