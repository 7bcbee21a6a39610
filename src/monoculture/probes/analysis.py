"""From stored distributions to the numbers a reader sees.

The unit of every interval is the *question* (a group of translations): questions are what a
different suite would have sampled differently, so resampling them says how much a ranking
depends on which 45 questions were asked. A model asked in several languages contributes, per
question, its mean over languages (similarity to a country), or the mean over languages both
answered (distance between two models), so a question counts once however many languages ask it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from monoculture.probes.metrics import (
    DEFAULT_B,
    DEFAULT_SEED,
    bootstrap_indices,
    bootstrap_mean,
    js_distance,
    nanmean,
    percentile_interval,
    similarity,
)

#: A country compared on fewer questions than this is listed but not ranked: with two
#: questions, a lucky match would put any country first.
MIN_QUESTIONS = 3

Dists = dict[str, dict[str, np.ndarray]]  # group -> language -> option distribution
Human = dict[tuple[str, str], np.ndarray]  # (group, country) -> option distribution


@dataclass
class CountryScore:
    country: str
    similarity: float
    lo: float
    hi: float
    p_top: float  # share of bootstrap draws in which this country ranks first
    n_questions: int
    w1: float = float("nan")  # 1 - normalised Wasserstein-1, on ordered questions only
    w1_lo: float = float("nan")
    w1_hi: float = float("nan")
    n_ordered: int = 0


@dataclass
class Sensitivity:
    mean: float  # mean JS distance between the answers to one question in two languages
    lo: float
    hi: float
    n_questions: int
    per_language: dict[str, float]  # mean distance of a language's answers from the others'
    top_questions: list[tuple[str, float]]


@dataclass
class Homogeneity:
    n_models: int
    n_countries: int
    n_questions: int
    models: tuple[float, float, float]  # mean pairwise JS distance among models (point, lo, hi)
    countries: tuple[float, float, float] | None
    difference: tuple[float, float, float] | None  # models - countries: < 0 = models more alike
    ratio: tuple[float, float, float] | None  # models / countries


@dataclass
class Steerability:
    country: str
    shift: tuple[float, float, float]  # mean JS distance between steered and plain answers
    n_questions: int
    base: float = float("nan")  # similarity to the country, plain
    steered: float = float("nan")  # similarity to the country, steered
    delta: tuple[float, float, float] | None = None
    rank_before: int | None = None
    rank_after: int | None = None
    n_countries: int = 0


@dataclass
class ModelResult:
    model: str
    method: str
    n_items: int
    n_questions: int
    languages: list[str]
    countries: list[CountryScore] = field(default_factory=list)  # ranked, best first
    unranked: list[CountryScore] = field(default_factory=list)  # too few common questions
    by_language: dict[str, CountryScore] = field(default_factory=dict)  # top country per language
    sensitivity: Sensitivity | None = None
    steering: list[Steerability] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    option_mass: float | None = None
    no_mass: int = 0


@dataclass
class MethodResult:
    method: str
    models: dict[str, ModelResult]
    homogeneity: Homogeneity | None


@dataclass
class PerspectiveResults:
    methods: dict[str, MethodResult]
    countries: list[str]
    country_questions: int
    questions: dict[str, str]
    b: int
    seed: int
    examples: dict[str, list[dict]] = field(default_factory=dict)  # method -> unparsed answers to show


# ---------------------------------------------------------------------------------------------


def country_scores(
    dists: Dists,
    human: Human,
    ordered: dict[str, bool] | None = None,
    *,
    b: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    min_questions: int = MIN_QUESTIONS,
) -> tuple[list[CountryScore], list[CountryScore]]:
    """Countries ranked by mean similarity over the questions both answered; (ranked, unranked)."""
    ordered = ordered or {}
    groups = sorted(g for g in dists if dists[g])
    countries = sorted({c for g, c in human if g in dists})
    if not groups or not countries:
        return [], []
    ci = {c: i for i, c in enumerate(countries)}
    by_group: dict[str, list[tuple[str, np.ndarray]]] = {}
    for (g, c), h in human.items():
        by_group.setdefault(g, []).append((c, h))
    s_js = np.full((len(countries), len(groups)), np.nan)
    s_w1 = np.full_like(s_js, np.nan)
    for gi, g in enumerate(groups):
        p = np.stack(list(dists[g].values()))  # (L, k)
        here = [(c, h) for c, h in by_group.get(g, []) if len(h) == p.shape[1]]
        if not here:
            continue
        h = np.stack([x for _, x in here])  # (C, k)
        rows = [ci[c] for c, _ in here]
        s_js[rows, gi] = similarity(p[None], h[:, None], "js").mean(axis=1)
        if ordered.get(g):
            s_w1[rows, gi] = similarity(p[None], h[:, None], "w1").mean(axis=1)
    n = np.isfinite(s_js).sum(axis=1)
    n_ord = np.isfinite(s_w1).sum(axis=1)
    point, w1 = nanmean(s_js, axis=1), nanmean(s_w1, axis=1)
    lo = hi = w1_lo = w1_hi = np.full(len(countries), np.nan)
    p_top = np.zeros(len(countries))
    eligible = n >= min_questions
    if b > 0:
        idx = bootstrap_indices(len(groups), b, seed)
        draws = nanmean(s_js[:, idx], axis=2)  # (C, B)
        lo, hi = percentile_interval(draws)
        w1_lo, w1_hi = percentile_interval(nanmean(s_w1[:, idx], axis=2))
        if eligible.any():
            d = np.where(np.isfinite(draws[eligible]), draws[eligible], -np.inf)
            wins = np.bincount(d.argmax(axis=0), minlength=int(eligible.sum()))
            p_top[eligible] = wins / b
    scores = [
        CountryScore(
            c,
            float(point[i]),
            float(lo[i]),
            float(hi[i]),
            float(p_top[i]),
            int(n[i]),
            float(w1[i]),
            float(w1_lo[i]),
            float(w1_hi[i]),
            int(n_ord[i]),
        )
        for i, c in enumerate(countries)
    ]
    ranked = sorted((s for s, e in zip(scores, eligible) if e), key=lambda s: (-s.similarity, s.country))
    unranked = sorted((s for s, e in zip(scores, eligible) if not e), key=lambda s: (-s.n_questions, s.country))
    return ranked, unranked


def language_sensitivity(dists: Dists, *, b: int = DEFAULT_B, seed: int = DEFAULT_SEED) -> Sensitivity | None:
    """How much the answer to one question depends on the language it is asked in."""
    per_q: dict[str, float] = {}
    per_lang: dict[str, list[float]] = {}
    for g, by_lang in dists.items():
        langs = sorted(by_lang)
        if len(langs) < 2:
            continue
        p = np.stack([by_lang[x] for x in langs])
        d = js_distance(p[:, None], p[None])
        iu = np.triu_indices(len(langs), 1)
        per_q[g] = float(d[iu].mean())
        for i, lang in enumerate(langs):
            per_lang.setdefault(lang, []).append(float(np.delete(d[i], i).mean()))
    if not per_q:
        return None
    groups = sorted(per_q)
    mean, lo, hi = bootstrap_mean([per_q[g] for g in groups], b, seed)
    return Sensitivity(
        mean,
        lo,
        hi,
        len(groups),
        dict(sorted(((lang, float(np.mean(v))) for lang, v in per_lang.items()), key=lambda kv: -kv[1])),
        sorted(per_q.items(), key=lambda kv: -kv[1])[:5],
    )


def _mean_pairwise(p: np.ndarray) -> float:
    """Mean JS distance over all pairs of rows, in one broadcast."""
    d = js_distance(p[:, None], p[None])
    return float(d[np.triu_indices(len(p), 1)].mean())


def _model_pairs(by_model: list[dict[str, np.ndarray]]) -> float:
    """Mean over model pairs of their distance on one question, each pair compared in the
    languages both were asked in (the same question in the same words)."""
    n = len(by_model)
    total, count = np.zeros((n, n)), np.zeros((n, n))
    for lang in sorted({x for d in by_model for x in d}):
        idx = [i for i, d in enumerate(by_model) if lang in d]
        sizes = {len(by_model[i][lang]) for i in idx}
        if len(idx) < 2 or len(sizes) > 1:
            continue
        p = np.stack([by_model[i][lang] for i in idx])
        total[np.ix_(idx, idx)] += js_distance(p[:, None], p[None])
        count[np.ix_(idx, idx)] += 1
    iu = np.triu_indices(n, 1)
    have = count[iu] > 0
    return float((total[iu][have] / count[iu][have]).mean()) if have.any() else float("nan")


def homogeneity(
    model_dists: dict[str, Dists], human: Human, *, b: int = DEFAULT_B, seed: int = DEFAULT_SEED
) -> Homogeneity | None:
    """Mean pairwise distance among models next to the same among countries, on the questions
    both sides answered: if models are further apart than nations, they are not a monoculture
    in this sense; if much closer, they are."""
    names = sorted(model_dists)
    if len(names) < 2:
        return None
    groups = sorted({g for d in model_dists.values() for g in d})
    by_group_c: dict[str, list[np.ndarray]] = {}
    for (g, _c), h in sorted(human.items()):
        by_group_c.setdefault(g, []).append(h)
    dm, dc = [], []
    for g in groups:
        here = [model_dists[m][g] for m in names if g in model_dists[m]]
        dm.append(_model_pairs(here) if len(here) > 1 else np.nan)
        hs = by_group_c.get(g, [])
        sizes = {len(h) for h in hs}
        dc.append(_mean_pairwise(np.stack(hs)) if len(hs) > 1 and len(sizes) == 1 else np.nan)
    dm_a, dc_a = np.array(dm), np.array(dc)
    n_countries = len({c for g, c in human if g in groups})
    has_c = np.isfinite(dc_a).any()
    keep = np.isfinite(dm_a) & (np.isfinite(dc_a) if has_c else True)
    if not keep.any():
        return None
    dm_a, dc_a = dm_a[keep], dc_a[keep]
    models = bootstrap_mean(dm_a, b, seed)
    if not has_c:
        return Homogeneity(len(names), n_countries, int(keep.sum()), models, None, None, None)
    countries = bootstrap_mean(dc_a, b, seed)
    idx = bootstrap_indices(len(dm_a), b, seed)
    m_d, c_d = dm_a[idx].mean(axis=1), dc_a[idx].mean(axis=1)
    diff_lo, diff_hi = percentile_interval(m_d - c_d)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_draws = m_d / c_d
        ratio = dm_a.mean() / dc_a.mean() if dc_a.mean() > 0 else np.nan
    r_lo, r_hi = percentile_interval(np.where(np.isfinite(ratio_draws), ratio_draws, np.nan))
    return Homogeneity(
        len(names),
        n_countries,
        int(keep.sum()),
        models,
        countries,
        (float(dm_a.mean() - dc_a.mean()), float(diff_lo), float(diff_hi)),
        (float(ratio), float(r_lo), float(r_hi)),
    )


def steerability(
    base: Dists,
    steered: Dists,
    country: str,
    human: Human,
    *,
    b: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    min_questions: int = MIN_QUESTIONS,
) -> Steerability | None:
    """How far "answer as a typical person in <country>" moves a model, and whether it moves
    towards that country's actual answers."""
    groups = sorted(set(base) & set(steered))
    shifts, deltas, sb, ss = [], [], [], []
    for g in groups:
        common = sorted(set(base[g]) & set(steered[g]))
        if not common:
            continue
        shifts.append(float(np.mean([js_distance(base[g][x], steered[g][x]) for x in common])))
        h = human.get((g, country))
        if h is not None:
            b_sim = float(np.mean([similarity(base[g][x], h) for x in common]))
            s_sim = float(np.mean([similarity(steered[g][x], h) for x in common]))
            sb.append(b_sim)
            ss.append(s_sim)
            deltas.append(s_sim - b_sim)
    if not shifts:
        return None
    out = Steerability(country, bootstrap_mean(shifts, b, seed), len(shifts))
    if deltas:
        out.base, out.steered = float(np.mean(sb)), float(np.mean(ss))
        out.delta = bootstrap_mean(deltas, b, seed)
        before, _ = country_scores(base, human, b=0, min_questions=min_questions)
        after, _ = country_scores(steered, human, b=0, min_questions=min_questions)
        out.rank_before = next((i + 1 for i, s in enumerate(before) if s.country == country), None)
        out.rank_after = next((i + 1 for i, s in enumerate(after) if s.country == country), None)
        out.n_countries = len(before)
    return out


# ---------------------------------------------------------------------------------------------


def collect_dists(df: pd.DataFrame) -> dict[tuple[str, str, str | None], Dists]:
    """(model, method, steer) -> group -> language -> distribution, from usable rows only."""
    out: dict[tuple[str, str, str | None], Dists] = {}
    ok = df[(df["status"] == "ok") & df["probs"].notna()] if len(df) else df
    for r in ok.itertuples(index=False):
        steer = r.steer if isinstance(r.steer, str) and r.steer else None  # pandas turns None into NaN
        out.setdefault((r.model, r.method, steer), {}).setdefault(r.group_id, {})[r.language] = r.probs
    return out


def analyse(
    df: pd.DataFrame,
    human: Human,
    *,
    b: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    min_questions: int = MIN_QUESTIONS,
    questions: dict[str, str] | None = None,
) -> PerspectiveResults:
    dists = collect_dists(df)
    ordered = {}
    if len(df) and "ordered" in df:
        ordered = {
            g: bool(o)
            for g, o in zip(df["group_id"], df["ordered"])
            if o is not None and not (isinstance(o, float) and np.isnan(o))
        }
    methods: dict[str, MethodResult] = {}
    for method in [m for m in ("logprobs", "sample") if len(df) and (df["method"] == m).any()]:
        mdf = df[df["method"] == method]
        models: dict[str, ModelResult] = {}
        for model in sorted(mdf["model"].unique()):
            rows = mdf[mdf["model"] == model]
            base = dists.get((model, method, None), {})
            res = ModelResult(
                model,
                method,
                n_items=int(((rows["status"] == "ok") & rows["steer"].isna()).sum()),
                n_questions=len(base),
                languages=sorted({x for d in base.values() for x in d}),
            )
            res.countries, res.unranked = country_scores(base, human, ordered, b=b, seed=seed, min_questions=min_questions)
            for lang in res.languages:
                only = {g: {lang: d[lang]} for g, d in base.items() if lang in d}
                ranked, _ = country_scores(only, human, ordered, b=0, min_questions=min_questions)
                if ranked:
                    res.by_language[lang] = ranked[0]
            res.sensitivity = language_sensitivity(base, b=b, seed=seed)
            for (m, meth, st), sd in sorted(dists.items(), key=lambda kv: str(kv[0])):
                if m == model and meth == method and st is not None:
                    s = steerability(base, sd, st, human, b=b, seed=seed, min_questions=min_questions)
                    if s is not None:
                        res.steering.append(s)
            if method == "sample":
                c: Counter = Counter()
                for o in rows["outcomes"]:
                    if isinstance(o, dict):
                        c.update(o)
                res.outcomes = {k: int(v) for k, v in c.items()}
            else:
                okr = rows[rows["status"] == "ok"]
                res.option_mass = float(okr["option_mass"].mean()) if len(okr) else None
                res.no_mass = int((rows["status"] == "no_mass").sum())
            models[model] = res
        hom = homogeneity(
            {m: dists.get((m, method, None), {}) for m in models if dists.get((m, method, None))}, human, b=b, seed=seed
        )
        methods[method] = MethodResult(method, models, hom)
    return PerspectiveResults(
        methods,
        countries=sorted({c for _, c in human}),
        country_questions=len({g for g, _ in human}),
        questions=questions or {},
        b=b,
        seed=seed,
    )


def load_results(
    store,
    *,
    study: str | None = None,
    models=None,
    b: int = DEFAULT_B,
    seed: int = DEFAULT_SEED,
    min_questions: int = MIN_QUESTIONS,
) -> PerspectiveResults | None:
    """Everything the summary and the report show, from the store (None without probe data)."""
    from monoculture.probes import store as pstore

    if not pstore.has_tables(store):
        return None
    df = pstore.read_distributions(store, study=study, models=models)
    if not len(df):
        return None
    human = pstore.read_countries(store)
    items = pstore.read_items(store)
    questions: dict[str, str] = {}
    for r in items.itertuples(index=False):
        if r.group_id not in questions or r.language == "en":
            questions[r.group_id] = r.question
    return analyse(df, human, b=b, seed=seed, min_questions=min_questions, questions=questions)
