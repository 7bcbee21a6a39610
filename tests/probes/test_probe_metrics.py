"""Metrics on synthetic distributions where the right answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from monoculture.probes.analysis import analyse, country_scores, homogeneity, language_sensitivity, steerability
from monoculture.probes.metrics import bootstrap_mean, js_distance, similarity, w1_normalised
from monoculture.probes.runner import logprobs_to_distribution

LANGS = ["en", "zh", "ar", "hi", "es", "ru", "sw"]


def world(seed=0, n_groups=40, n_countries=12, k=4):
    rng = np.random.default_rng(seed)
    groups = [f"q{i:02d}" for i in range(n_groups)]
    countries = [f"Country {i}" for i in range(n_countries)]
    human = {(g, c): rng.dirichlet(np.ones(k) * 0.7) for g in groups for c in countries}
    return rng, groups, countries, human


def test_js_distance_matches_scipy_and_its_bounds():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)
    assert js_distance([1, 0, 0], [1, 0, 0]) == pytest.approx(0.0)
    assert js_distance([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)
    assert js_distance([2, 2], [1, 1]) == pytest.approx(0.0)  # shares on any scale


def test_w1_is_normalised_by_its_maximum():
    assert w1_normalised([1, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(1.0)
    assert w1_normalised([1, 0, 0, 0], [0, 1, 0, 0]) == pytest.approx(1 / 3)
    assert w1_normalised([0.5, 0, 0.5], [0.5, 0, 0.5]) == pytest.approx(0.0)
    # the scale matters to W1 but not to JS: adjacent is nearer than opposite
    assert similarity([1, 0, 0, 0], [0, 1, 0, 0], "w1") > similarity([1, 0, 0, 0], [0, 0, 0, 1], "w1")
    assert similarity([1, 0, 0, 0], [0, 1, 0, 0], "js") == pytest.approx(similarity([1, 0, 0, 0], [0, 0, 0, 1], "js"))


def test_a_model_that_copies_a_country_ranks_it_first():
    _, groups, countries, human = world()
    target = "Country 7"
    model = {g: {lang: human[(g, target)] for lang in LANGS} for g in groups}
    ranked, unranked = country_scores(model, human, {g: True for g in groups})
    assert ranked[0].country == target and not unranked
    assert ranked[0].similarity == pytest.approx(1.0) and ranked[0].p_top == 1.0
    assert ranked[0].w1 == pytest.approx(1.0) and ranked[0].n_ordered == len(groups)
    assert ranked[1].similarity < 0.95
    assert [s.similarity for s in ranked] == sorted((s.similarity for s in ranked), reverse=True)


def test_a_noisy_copy_still_ranks_its_country_first_with_an_interval():
    rng, groups, countries, human = world(1)
    target = "Country 3"
    model = {g: {"en": 0.8 * human[(g, target)] + 0.2 * rng.dirichlet(np.ones(4))} for g in groups}
    ranked, _ = country_scores(model, human)
    top = ranked[0]
    assert top.country == target
    assert top.lo <= top.similarity <= top.hi < 1.0
    assert top.p_top > 0.9
    assert sum(s.p_top for s in ranked) == pytest.approx(1.0)


def test_countries_with_too_few_shared_questions_are_not_ranked():
    _, groups, _, human = world(2)
    human = {k: v for k, v in human.items() if k[1] != "Country 0" or k[0] in groups[:2]}
    model = {g: {"en": human[(g, "Country 0")]} for g in groups[:2]} | {g: {"en": human[(g, "Country 1")]} for g in groups[2:]}
    ranked, unranked = country_scores(model, human, min_questions=3)
    assert [u.country for u in unranked] == ["Country 0"] and unranked[0].n_questions == 2
    assert ranked[0].country == "Country 1"


def test_identical_answers_in_all_languages_give_zero_language_sensitivity():
    rng, groups, _, _ = world()
    model = {}
    for g in groups:
        p = rng.dirichlet(np.ones(4))
        model[g] = {lang: p.copy() for lang in LANGS}
    s = language_sensitivity(model)
    assert (
        s.mean == pytest.approx(0.0, abs=1e-12)
        and s.lo == pytest.approx(0.0, abs=1e-12)
        and s.hi == pytest.approx(0.0, abs=1e-12)
    )
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in s.per_language.values())
    assert s.n_questions == len(groups)


def test_the_language_that_answers_differently_moves_the_model_most():
    rng, groups, _, _ = world()
    model = {}
    for g in groups:
        p, q = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
        model[g] = {lang: (q if lang == "sw" else p) for lang in LANGS}
    s = language_sensitivity(model)
    assert next(iter(s.per_language)) == "sw"
    assert s.mean > 0 and s.lo > 0
    assert language_sensitivity({g: {"en": d["en"]} for g, d in model.items()}) is None  # one language: nothing to compare


def test_homogeneity_identical_models_are_more_alike_than_countries():
    rng, groups, countries, human = world()
    m = {g: {"en": rng.dirichlet(np.ones(4))} for g in groups}
    h = homogeneity({"a": m, "b": m, "c": m}, human)
    assert h.models[0] == pytest.approx(0.0) and h.n_models == 3 and h.n_countries == len(countries)
    assert h.difference[2] < 0 and h.ratio[0] == pytest.approx(0.0)


def test_homogeneity_models_spread_like_countries_are_not_called_homogeneous():
    _, groups, countries, human = world(5)
    models = {f"m{i}": {g: {"en": human[(g, countries[i])]} for g in groups} for i in range(6)}
    h = homogeneity(models, human)
    lo, hi = h.ratio[1], h.ratio[2]
    assert lo < 1.0 < hi or abs(h.ratio[0] - 1) < 0.15
    assert homogeneity({"only": models["m0"]}, human) is None
    no_countries = homogeneity(models, {})
    assert no_countries.countries is None and no_countries.models[0] > 0


def test_steering_towards_a_country_that_it_copies_then_raises_similarity():
    rng, groups, countries, human = world(4)
    base = {g: {"en": rng.dirichlet(np.ones(4))} for g in groups}
    steered = {g: {"en": human[(g, "Country 2")]} for g in groups}
    s = steerability(base, steered, "Country 2", human)
    assert s.delta[0] > 0 and s.delta[1] > 0
    assert s.steered == pytest.approx(1.0) and s.rank_after == 1
    assert s.shift[0] > 0
    same = steerability(base, base, "Country 2", human)
    assert same.shift[0] == pytest.approx(0.0) and same.delta[0] == pytest.approx(0.0)
    unknown = steerability(base, steered, "Atlantis", human)
    assert unknown.delta is None and unknown.shift[0] > 0


def test_bootstrap_is_seeded_and_has_the_default_size():
    v = np.random.default_rng(0).random(30)
    assert bootstrap_mean(v) == bootstrap_mean(v)
    assert bootstrap_mean(v, seed=1) != bootstrap_mean(v, seed=2)
    m, lo, hi = bootstrap_mean(v)
    assert lo < m < hi
    assert all(math.isnan(x) for x in bootstrap_mean([]))


def test_logprobs_become_a_distribution_over_the_options_only():
    lp = {"A": math.log(0.5), "B": math.log(0.2), "C": -math.inf}
    probs, mass = logprobs_to_distribution(lp, ["A", "B", "C"])
    assert probs == pytest.approx([0.5 / 0.7, 0.2 / 0.7, 0.0])
    assert mass == pytest.approx(0.7)
    assert logprobs_to_distribution({"A": -math.inf}, ["A", "B"]) == (None, 0.0)
    probs, _ = logprobs_to_distribution({"A": -1000.0, "B": -1001.0}, ["A", "B"])  # no underflow
    assert probs == pytest.approx([1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))])


def test_analyse_puts_it_together():
    rng, groups, countries, human = world(6, n_groups=20)
    rows = []
    for model, target in (("copy-7", "Country 7"), ("copy-2", "Country 2")):
        for g in groups:
            for lang in ("en", "zh", "ar"):
                rows.append(
                    {
                        "model": model,
                        "method": "logprobs",
                        "steer": None,
                        "group_id": g,
                        "language": lang,
                        "item_id": f"{g}-{lang}",
                        "status": "ok",
                        "probs": human[(g, target)],
                        "ordered": True,
                        "option_mass": 0.9,
                        "outcomes": None,
                    }
                )
                rows.append(
                    {
                        "model": model,
                        "method": "logprobs",
                        "steer": "Country 5",
                        "group_id": g,
                        "language": lang,
                        "item_id": f"{g}-{lang}",
                        "status": "ok",
                        "probs": human[(g, "Country 5")],
                        "ordered": True,
                        "option_mass": 0.9,
                        "outcomes": None,
                    }
                )
    res = analyse(pd.DataFrame(rows), human, b=200)
    mr = res.methods["logprobs"]
    assert mr.models["copy-7"].countries[0].country == "Country 7"
    assert mr.models["copy-2"].countries[0].country == "Country 2"
    assert mr.models["copy-7"].by_language["zh"].country == "Country 7"
    assert mr.models["copy-7"].sensitivity.mean == pytest.approx(0.0, abs=1e-12)
    st = mr.models["copy-7"].steering[0]
    assert st.country == "Country 5" and st.rank_after == 1 and st.delta[0] > 0
    assert mr.homogeneity.n_models == 2 and mr.homogeneity.n_questions == len(groups)
    assert mr.models["copy-7"].option_mass == pytest.approx(0.9)
