"""The GPU check's bookkeeping: the chats the study sends (for the bare-vLLM baseline), and the
summary that sets monoculture's generation throughput beside bare vLLM's.

    python benchmarks/gpu_check_report.py prompts STUDY.yaml OUT.json
    python benchmarks/gpu_check_report.py summary --store S.duckdb --study NAME --baseline DIR \\
        --study-log LOG --steps STEPS.tsv --json OUT.json [--goal 0.9]

Monoculture's throughput per model is read from the store: the tokens of its answers over the
span from the start of its first ``generate`` call (a row's ``created_at`` less its call's
``latency_s``) to its last row written, so it counts monoculture's own work around the engine
(prompt rendering, results, store writes) but not the model's load. The engine call alone is
printed too. Bare vLLM's is the tokens over the wall time of its one ``generate`` call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

PHASE_LINE = re.compile(r"^(run|probe|measure|report): .*\((\d+(?:\.\d+)?) s\)\s*$")


def cmd_prompts(study_file: Path, out: Path) -> int:
    """The chats exactly as the collect phase renders them (the study's system prompt, if any,
    then each prompt's messages)."""
    from monoculture.collect import render_messages
    from monoculture.study import load_study

    study = load_study(study_file)
    chats = [render_messages(p, study.sampling) for p in study.load_prompts()]
    out.write_text(json.dumps(chats, ensure_ascii=False, indent=1) + "\n")
    print(f"{len(chats)} prompts -> {out}")
    return 0


def monoculture_throughput(store: Path, study: str) -> dict[str, dict]:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute(
            """
            SELECT g.model, count(*), sum(g.completion_tokens), count(DISTINCT g.latency_s), sum(DISTINCT g.latency_s),
                   min(g.created_at - g.latency_s), max(g.created_at), sum(CASE WHEN g.error IS NULL THEN 0 ELSE 1 END)
            FROM generations g JOIN study_models sm ON sm.model = g.model AND sm.study = ?
            WHERE g.source = 'run'
            GROUP BY g.model ORDER BY g.model
            """,
            [study],
        ).fetchall()
    finally:
        con.close()
    out = {}
    for model, n, tokens, calls, call_s, start, end, failed in rows:
        span = (end - start) if start is not None and end is not None else None
        tokens = int(tokens or 0)
        out[model] = {
            "answers": int(n),
            "failed": int(failed),
            "completion_tokens": tokens,
            "generate_calls": int(calls),
            "engine_s": round(call_s, 3) if call_s else None,
            "span_s": round(span, 3) if span else None,
            "tokens_per_s": round(tokens / span, 1) if span else None,
            "engine_tokens_per_s": round(tokens / call_s, 1) if call_s else None,
        }
    return out


def phase_times(log: Path) -> dict[str, float]:
    """Each phase's wall time as ``monoculture study`` prints it (``run: ... (12.3 s)``)."""
    times: dict[str, float] = {}
    if log.is_file():
        for line in log.read_text(errors="replace").splitlines():
            m = PHASE_LINE.match(line.strip())
            if m:
                times[m.group(1)] = float(m.group(2))
    return times


def read_steps(path: Path) -> list[dict]:
    steps = []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 3:
                steps.append({"step": parts[0], "seconds": float(parts[1]), "status": int(parts[2])})
    return steps


def cmd_summary(a: argparse.Namespace) -> int:
    mono = monoculture_throughput(a.store, a.study) if a.store.is_file() else {}
    bare = {}
    for f in sorted(a.baseline.glob("*.json")) if a.baseline.is_dir() else []:
        d = json.loads(f.read_text())
        bare[d["model"]] = d
    models = list(dict.fromkeys([*mono, *bare]))
    table = []
    for m in models:
        x, b = mono.get(m, {}), bare.get(m, {})
        ratio = x["tokens_per_s"] / b["tokens_per_s"] if x.get("tokens_per_s") and b.get("tokens_per_s") else None
        engine_ratio = (
            x["engine_tokens_per_s"] / b["tokens_per_s"] if x.get("engine_tokens_per_s") and b.get("tokens_per_s") else None
        )
        table.append(
            {
                "model": m,
                "monoculture": x,
                "bare_vllm": b,
                "ratio": round(ratio, 3) if ratio else None,
                "engine_ratio": round(engine_ratio, 3) if engine_ratio else None,
            }
        )
    ratios = [r["ratio"] for r in table if r["ratio"] is not None]
    complete = bool(table) and len(ratios) == len(table)
    worst = min(ratios) if ratios else None
    phases = phase_times(a.study_log)
    steps = read_steps(a.steps)
    summary = {
        "scale": a.scale,
        "goal": a.goal,
        "worst_ratio": worst,
        "goal_met": bool(complete and worst is not None and worst >= a.goal),
        "complete": complete,
        "models": table,
        "phases_s": phases,
        "steps": steps,
        "total_s": round(sum(s["seconds"] for s in steps), 1),
        **({"settings": json.loads(a.settings)} if a.settings else {}),
    }
    a.json.write_text(json.dumps(summary, indent=2) + "\n")

    def f(v, spec=".1f"):
        return "-" if v is None else format(v, spec)

    print()
    print("generation throughput (tokens/s; load excluded)")
    print(f"{'model':<18} {'answers':>7} {'tokens':>8} {'monoculture':>12} {'bare vLLM':>10} {'ratio':>6}   engine call only")
    for r in table:
        x, b = r["monoculture"], r["bare_vllm"]
        print(
            f"{r['model']:<18} {x.get('answers', '-'):>7} {x.get('completion_tokens', '-'):>8} {f(x.get('tokens_per_s')):>12} "
            f"{f(b.get('tokens_per_s')):>10} {f(r['ratio'], '.3f'):>6}   {f(x.get('engine_tokens_per_s'))} ({f(r['engine_ratio'], '.3f')})"
        )
        if b and x.get("completion_tokens") != b.get("completion_tokens"):
            print(f"{'':<18} (bare vLLM generated {b.get('completion_tokens')} tokens)")
    print()
    print("monoculture study phases: " + (", ".join(f"{p} {s:.1f} s" for p, s in phases.items()) or "-"))
    gen = sum(x["monoculture"].get("span_s") or 0 for x in table)
    if "run" in phases and gen:
        print(f"  of the run phase, generating {gen:.1f} s; loading models and the rest {phases['run'] - gen:.1f} s")
    done = [f"{s['step']} {s['seconds']:.1f} s" + ("" if s["status"] == 0 else f" (exit {s['status']})") for s in steps]
    print("steps: " + ", ".join(done))
    print(f"total {summary['total_s']:.1f} s")
    verdict = "met" if summary["goal_met"] else ("NOT met" if complete else "not measured (incomplete run)")
    note = "" if a.scale == "real" else f" (scale {a.scale}: a smoke run, not the goal's figure)"
    print(f"goal: monoculture / bare vLLM >= {a.goal} for every model: {verdict}; worst {f(worst, '.3f')}{note}")
    print(f"-> {a.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prompts")
    p.add_argument("study_file", type=Path)
    p.add_argument("out", type=Path)
    s = sub.add_parser("summary")
    s.add_argument("--store", type=Path, required=True)
    s.add_argument("--study", required=True)
    s.add_argument("--baseline", type=Path, required=True, help="folder of gpu_check_baseline.py JSON files")
    s.add_argument("--study-log", type=Path, required=True)
    s.add_argument("--steps", type=Path, required=True)
    s.add_argument("--json", type=Path, required=True)
    s.add_argument("--scale", default="real")
    s.add_argument("--goal", type=float, default=0.9)
    s.add_argument("--settings", help="JSON object of the run's settings, copied into the summary")
    a = ap.parse_args(argv)
    if a.cmd == "prompts":
        return cmd_prompts(a.study_file, a.out)
    return cmd_summary(a)


if __name__ == "__main__":
    sys.exit(main())
