"""How big is the report of a measured store, how long does it take to build, and how long to open?

Builds the report of STORE (latest measurement), then opens it in headless Chromium (the system
/usr/bin/chromium, or $MONOCULTURE_CHROMIUM) and reads when the page had loaded and when every
figure was drawn. Targets for AlpacaEval (28 models, 805 prompts): under 20 MB, open under 5 s.

    monoculture import alpaca-eval ../shared/data/alpaca_eval/results --store alpaca.duckdb
    monoculture measure alpaca.duckdb --embedder tfidf -B 200
    python benchmarks/bench_report.py alpaca.duckdb [--max-prompts 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser import open_page  # noqa: E402
from monoculture.report import build_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--max-prompts", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3, help="page loads to time (the median is reported)")
    args = ap.parse_args()

    out = Path(tempfile.mkdtemp(prefix="bench-report-")) / "report.html"
    t0 = time.perf_counter()
    info = build_report(args.store, out, max_prompts=args.max_prompts)
    build_s = time.perf_counter() - t0
    loads = []
    for _ in range(args.runs):
        with open_page(out, viewport=(1400, 1000), settle_ms=0, timeout_ms=60_000) as page:
            page.page.wait_for_function("document.documentElement.getAttribute('data-rendered') === 'true'", timeout=60_000)
            t = page.evaluate("() => [performance.getEntriesByType('navigation')[0].loadEventEnd, window.monocultureRenderedAt]")
            if page.console_errors:
                print("console errors:", page.console_errors, file=sys.stderr)
            loads.append(max(t) / 1000)
    loads.sort()
    print(
        f"report: {info.bytes / 1e6:.1f} MB, {len(info.figures)} figures, explorer {info.explorer_prompts}/{info.total_prompts} prompts"
    )
    print(
        f"build: {build_s:.1f} s; open and draw: median {loads[len(loads) // 2]:.2f} s (runs: {', '.join(f'{x:.2f}' for x in loads)})"
    )
    ok = info.bytes < 20e6 and loads[len(loads) // 2] < 5
    print("within targets (< 20 MB, < 5 s)" if ok else "OUTSIDE targets (< 20 MB, < 5 s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
