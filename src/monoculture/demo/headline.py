"""The demo's headline: the figures it prints, as numbers first and as text second.

The arena figures are chosen as the report page chooses them (``monoculture.report.build.headline``:
the three largest leave-one-out losses; the groups that lose most beyond a random group of their
size), so the terminal and the page never disagree about which model or group leads. The
numbers are then read from the measurement's own tables, unrounded, so that a test can check
them and the printed text is one formatting of them.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console

# The two NoveltyBench sources the headline sets side by side; the table lists all five.
MODEL, HUMANS = "gpt-4o", "humans"


def _num(v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _est(d) -> tuple[float, float, float]:
    """(value, lo, hi) of a summary estimate {value, ci: [lo, hi]}; NaN where missing."""
    if not isinstance(d, dict):
        return math.nan, math.nan, math.nan
    ci = d.get("ci") or [None, None]
    return _num(d.get("value")), _num(ci[0]), _num(ci[1])


def arena_picks(measured) -> dict[str, Any]:
    """The report's choice of models and groups, with their unrounded figures."""
    from monoculture.report.build import headline as report_headline

    per_model = measured.tables.get("per_model")
    groups = measured.tables.get("groups")
    chosen = report_headline(measured.summary, per_model, groups)
    models = []
    for m in chosen["models"]:
        r = per_model.loc[m["name"]]
        models.append({"name": m["name"], "loss": _num(r["loo"]), "lo": _num(r["loo_lo"]), "hi": _num(r["loo_hi"])})
    picked = []
    for g in chosen["groups"]:
        r = groups[(groups["attribute"] == g["attribute"]) & (groups["group"] == g["name"])].iloc[0]
        picked.append(
            {
                "attribute": g["attribute"],
                "name": g["name"],
                "size": int(r["size"]),
                "loss": _num(r["loss"]),
                "lo": _num(r["loss_lo"]),
                "hi": _num(r["loss_hi"]),
                "random": _num(r["baseline"]),
                "p": g["p"],
                "members": list(r["members"]) if isinstance(r["members"], (list, tuple)) else [],
            }
        )
    return {"models": models, "groups": picked}


def judged_classes(st, models: list[str]) -> dict[str, float]:
    """NoveltyBench's own judgement, for comparison: the mean number of equivalence classes its
    classifier found per prompt, per source (from the imported ``partition_label``)."""
    if not models:
        return {}
    rows = st.con.execute(
        """SELECT model, avg(n) FROM (
               SELECT model, prompt_key, count(DISTINCT json_extract(params, '$.partition_label')) AS n
               FROM generations
               WHERE model IN (SELECT unnest(?)) AND json_extract(params, '$.partition_label') IS NOT NULL
               GROUP BY model, prompt_key)
           GROUP BY model""",
        [list(models)],
    ).fetchall()
    return {m: float(v) for m, v in rows}


def headline(arena, novelty, judged: dict[str, float]) -> dict[str, float]:
    """Every number the headline prints, by name (NaN where a measurement lacks it)."""
    s = arena.summary
    out: dict[str, float] = {}
    for key, name in (("voices", "V"), ("homogeneity", "H")):
        out[name], out[f"{name}_lo"], out[f"{name}_hi"] = _est(s.get(key))
    floor = s.get("off_prompt_floor")
    out["F"] = _num(floor.get("value") if isinstance(floor, dict) else floor)
    picks = arena_picks(arena)
    for i, m in enumerate(picks["models"], 1):
        out[f"loss{i}"], out[f"loss{i}_lo"], out[f"loss{i}_hi"] = m["loss"], m["lo"], m["hi"]
    for i, g in enumerate(picks["groups"], 1):
        out[f"group{i}_loss"], out[f"group{i}_random"] = g["loss"], g["random"]
    n = novelty.summary
    for src in (MODEL, HUMANS):
        out[f"distinct_{src}"], out[f"distinct_{src}_lo"], out[f"distinct_{src}_hi"] = _est((n.get("distinct_k") or {}).get(src))
        out[f"within_{src}"] = _num((n.get("within_model_similarity") or {}).get(src))
        out[f"judged_{src}"] = judged.get(src, math.nan)
    ref = n.get("reference") or {}
    out["ratio"], out["ratio_lo"], out["ratio_hi"] = _est(ref.get("ratio"))
    return out


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def _ci(v: float, lo: float, hi: float, digits: int = 3) -> str:
    return f"{_f(v, digits)} [{_f(lo, digits)}, {_f(hi, digits)}]"


def print_headline(res, console: Console) -> None:
    """The headline in plain words: what the demo found, each figure with its 95% interval."""
    from monoculture.demo import PARTS

    f = res.figures
    arena = res.parts["arena"].measured
    novelty = res.parts["noveltybench"].measured
    n_models = len(arena.summary.get("models") or [])
    p = {x.study: x for x in PARTS}
    say = console.print
    say(p["arena"].title)
    say(
        f"  voices V = {_ci(f['V'], f['V_lo'], f['V_hi'], 2)} of {n_models} possible: on a typical prompt the "
        f"{n_models} models sound like about {_f(f['V'], 1)} distinct voices"
    )
    say(
        f"  homogeneity H = {_ci(f['H'], f['H_lo'], f['H_hi'])}, against the floor F = {_f(f['F'])} "
        "(two answers to different prompts)"
    )
    picks = arena_picks(arena)
    if picks["models"]:
        say("  largest losses without one model (leave-one-out L_m):")
        for m in picks["models"]:
            say(f"    {m['name']}: {_ci(m['loss'], m['lo'], m['hi'])}")
    if picks["groups"]:
        say("  a group against random groups of its size (L_G; random = mean over random groups of as many models):")
        for g in picks["groups"]:
            say(
                f"    {g['attribute']}={g['name']} ({g['size']} models): L_G = {_ci(g['loss'], g['lo'], g['hi'])}, "
                f"random {_f(g['random'])} (p {g['p']})"
            )
    say("")
    say(p["noveltybench"].title)
    per_model = novelty.tables.get("per_model")
    dk = novelty.summary.get("distinct_k") or {}
    within = novelty.summary.get("within_model_similarity") or {}
    judged = res.judged
    say(f"  {'source':<22}{'answers':>8}  {'distinct answers [95% CI]':<26}{'NoveltyBench judged':>20}{'within W':>10}")
    for src in novelty.summary.get("models") or []:
        k = per_model.loc[src, "mean_k"] if per_model is not None and src in per_model.index else math.nan
        v, lo, hi = _est(dk.get(src))
        say(
            f"  {src:<22}{_f(_num(k), 1):>8}  {_ci(v, lo, hi, 2):<26}{_f(judged.get(src, math.nan), 2):>20}{_f(_num(within.get(src))):>10}"
        )
    say(
        f"  {MODEL}: {_f(f['distinct_' + MODEL], 2)} distinct answers per prompt against {_f(f['distinct_' + HUMANS], 2)} for humans; "
        f"answers across the four GPT-4o sources are {_ci(f['ratio'], f['ratio_lo'], f['ratio_hi'], 2)} times as alike "
        "as humans' answers are to each other (H against the human reference)"
    )
    from monoculture.demo import TAU

    say(
        f"  (distinct answers: cosine >= tau = {TAU} counts as the same answer, tau calibrated for tfidf on "
        "NoveltyBench's judged classes, in sample; 'judged' is the benchmark's own count of classes)"
    )
    say("")
    for r in res.parts.values():
        did = "measured" if r.measured_now else "reused"
        say(f"report: {r.report} ({r.part.study}; {did}{', imported' if r.imported else ''})")
    say(f"store: {res.store} ({res.seconds:.1f} s)")
