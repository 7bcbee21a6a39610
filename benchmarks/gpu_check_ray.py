"""The GPU check's Ray + vLLM run: one model through ``monoculture run`` on a one-GPU Ray cluster.

benchmarks/gpu_check.sh writes a study of one of its models with ``executor: {kind: ray}``, so
monoculture hands the jobs to Ray Data's LLM batch API (``vLLMEngineProcessorConfig``, one engine
on the machine's GPU) instead of its own vllm backend. This script starts a local Ray instance
(the machine's GPU is its one GPU), runs the study into a fresh store, and compares the
throughput with bare vLLM's on the same chats (the baseline step's JSON for the same model).

What is compared: completion tokens over the wall time of producing them, *engine load
included on both sides* (bare vLLM: its load plus its one ``generate`` call; ours: the whole
``run_study`` call, in which the Ray stage starts its engine actor, loads the model and then
generates). Ray Data starts the engine inside its stage, so the load cannot be timed apart on our
side; subtracting it on one side only would compare different things. Ray's own start (the local
instance) is timed and printed but not counted. The load-excluded figure is printed as well,
estimated by subtracting bare vLLM's load from our wall time, which charges any extra start-up
time of the Ray stage against our generation: a lower bound.

    python benchmarks/gpu_check_ray.py STUDY.yaml --baseline baseline/MODEL.json --json ray.json

Exit status: 0 when the run completed (every answer stored, none failed) and the end-to-end ratio
is at least ``--goal`` (0.9), 4 when the ratio misses it, 1 when answers are missing or failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def compare(ours: dict, bare: dict, goal: float) -> dict:
    """Throughputs and ratios of our run (completion_tokens, wall_s) against bare vLLM's
    (completion_tokens, load_s, generate_s)."""
    bare_total = bare["load_s"] + bare["generate_s"]
    end_to_end = ours["completion_tokens"] / ours["wall_s"] if ours["wall_s"] > 0 else None
    bare_end_to_end = bare["completion_tokens"] / bare_total if bare_total > 0 else None
    gen_s = ours["wall_s"] - bare["load_s"]
    load_excluded = ours["completion_tokens"] / gen_s if gen_s > 0 else None
    ratio = end_to_end / bare_end_to_end if end_to_end and bare_end_to_end else None
    return {
        "tokens_per_s_end_to_end": round(end_to_end, 1) if end_to_end else None,
        "bare_tokens_per_s_end_to_end": round(bare_end_to_end, 1) if bare_end_to_end else None,
        "ratio_end_to_end": round(ratio, 3) if ratio else None,
        "tokens_per_s_load_excluded_lower_bound": round(load_excluded, 1) if load_excluded else None,
        "bare_tokens_per_s": bare.get("tokens_per_s"),
        "ratio_load_excluded_lower_bound": round(load_excluded / bare["tokens_per_s"], 3)
        if load_excluded and bare.get("tokens_per_s")
        else None,
        "goal": goal,
        "goal_met": bool(ratio is not None and ratio >= goal),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, help="the one-model study with executor kind ray (gpu_check.sh writes it)")
    ap.add_argument("--baseline", type=Path, required=True, help="bare vLLM's JSON for the same model (gpu_check_baseline.py)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--goal", type=float, default=0.9)
    a = ap.parse_args()

    import ray

    from monoculture.collect import run_study
    from monoculture.store import Store
    from monoculture.study import load_study

    study = load_study(a.study)
    if study.executor.kind != "ray" or len(study.models) != 1:
        print(f"error: {a.study}: want one model and executor kind ray", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)  # a local instance: this machine's CPUs and GPU
    ray_start_s = time.perf_counter() - t0
    gpus = ray.cluster_resources().get("GPU", 0)
    print(f"Ray {ray.__version__}: a local instance with {gpus:g} GPU(s), started in {ray_start_s:.1f} s", flush=True)
    try:
        with Store(study.store_path()) as st:
            t0 = time.perf_counter()
            stats = run_study(study, st, show_progress=False)
            wall = time.perf_counter() - t0
            n, tokens, failed = st.con.execute(
                "SELECT count(*), coalesce(sum(completion_tokens), 0), count(error) FROM generations"
            ).fetchone()
            errors = [
                r[0] for r in st.con.execute("SELECT DISTINCT error FROM generations WHERE error IS NOT NULL LIMIT 3").fetchall()
            ]
    finally:
        ray.shutdown()
    bare = json.loads(a.baseline.read_text())
    ours = {"answers": int(n), "failed": int(failed), "completion_tokens": int(tokens), "wall_s": round(wall, 2)}
    res = {
        "model": study.models[0].name,
        **ours,
        "generated": stats.generated,
        "ray_start_s": round(ray_start_s, 2),
        "gpus": gpus,
        "bare": {k: bare.get(k) for k in ("answers", "completion_tokens", "load_s", "generate_s", "tokens_per_s")},
        **compare(ours, bare, a.goal),
    }
    print(
        f"Ray + vLLM {res['model']}: {n} answers ({failed} failed), {tokens} tokens in {wall:.1f} s, engine load included: "
        f"{res['tokens_per_s_end_to_end']} tok/s; bare vLLM {bare['answers']} answers, {bare['completion_tokens']} tokens in "
        f"{bare['load_s'] + bare['generate_s']:.1f} s (load {bare['load_s']:.1f} s): {res['bare_tokens_per_s_end_to_end']} tok/s; "
        f"ratio {res['ratio_end_to_end']} (goal {a.goal}); load excluded (lower bound): "
        f"{res['tokens_per_s_load_excluded_lower_bound']} against {bare.get('tokens_per_s')} tok/s, "
        f"ratio {res['ratio_load_excluded_lower_bound']}",
        flush=True,
    )
    if errors:
        print(f"errors stored: {errors}", flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=2) + "\n")
    if failed or n != bare.get("answers"):
        return 1
    return 0 if res["goal_met"] else 4


if __name__ == "__main__":
    sys.exit(main())
