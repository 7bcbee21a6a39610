"""The study report's "Perspectives" section.

``perspectives_section(store)`` returns ``{"title", "html", "figures", "figure_ids"}`` or None
when the store holds no probe data. ``html`` is a fragment (no <html>, no scripts) in which
figure *i* belongs in the empty element ``<div id="perspectives-fig-i">``; ``figures[i]`` is a
plain plotly figure dict (``{"data": [...], "layout": {...}}``) for ``Plotly.newPlot``.
Everything that came from a model, a suite or a user file is escaped (jinja2 autoescape).
``standalone_page`` wraps a section into a page of its own, plotly.js inlined, for tests and
for looking at one section alone.
"""

from __future__ import annotations

import json

from jinja2 import Environment

from monoculture.probes.analysis import MIN_QUESTIONS, MethodResult, PerspectiveResults, load_results
from monoculture.probes.format import ci as _ci
from monoculture.probes.format import moved_most
from monoculture.probes.format import num as _f
from monoculture.probes.metrics import DEFAULT_B, DEFAULT_SEED
from monoculture.report.htmlsafe import content_security_policy, inline_script, install_filters, plot_label, script_json

METHOD_TITLES = {
    "logprobs": "First-token probabilities of the option letters",
    "sample": "Sampled answers, parsed strictly",
}
MAX_HEATMAP_COUNTRIES = 30

_env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
install_filters(_env)  # bdi: names beside figures keep their direction to themselves

TEMPLATE = _env.from_string(
    """
<div class="mc-perspectives">
<p>Each model answered the multiple-choice <em>values</em> questions; its answer to a question is a
probability distribution over the options. That distribution is compared with how people in each
country answered (when reference data was loaded), with the model's own answers in other
languages, and with the other models'. Intervals are 95% bootstrap intervals over questions
({{ b }} draws, seed {{ seed }}).</p>
<p class="mc-caveat"><strong>What these numbers do not mean.</strong> A multiple-choice answer is not a
belief: it is what a model puts on one token after one prompt, and it moves with the wording,
the order of options, the language and the sampling settings. "Resembles Germany" means its
answer distributions on these questions lie nearest Germany's survey shares, not that the model
holds German values, and a country's shares are a survey's, with its own sampling error and
translation choices.</p>
{% if not has_countries %}
<p class="mc-note">No human reference data in the store: run <code>monoculture probe STUDY.yaml --countries PATH</code>
to compare models with countries.</p>
{% endif %}
{% for m in methods %}
<h3>{{ m.title }}</h3>
{% if m.mass_note %}<p class="mc-note">{{ m.mass_note|nobidi }}</p>{% endif %}
{% if has_countries %}
<h4>Which countries' answers each model resembles</h4>
<table class="mc-table">
<thead><tr><th>Model</th><th>Questions</th><th>Closest</th><th>Second</th><th>Third</th></tr></thead>
<tbody>
{% for r in m.rows %}
<tr><td>{{ r.model }}</td><td>{{ r.n_questions }}</td>
{% for c in r.top %}<td><strong>{{ c.country|bdi }}</strong> {{ c.sim }} <span class="mc-ci">[{{ c.lo }}, {{ c.hi }}]</span><br><small>first in {{ c.ptop }} of draws; {{ c.n }} questions{% if c.w1 %}; ordered-scale similarity {{ c.w1 }}{% endif %}</small></td>{% endfor %}
{% for _ in range(3 - r.top|length) %}<td>{% if loop.first and not r.top %}no country shares {{ min_q }}+ questions{% endif %}</td>{% endfor %}
</tr>
{% endfor %}
</tbody></table>
{% if m.heatmap is not none %}<div class="mc-figure" id="perspectives-fig-{{ m.heatmap }}"></div>{% endif %}
{% if m.by_language %}
<p>Closest country when asked in each language:</p>
<table class="mc-table"><thead><tr><th>Model</th>{% for l in m.languages %}<th>{{ l }}</th>{% endfor %}</tr></thead><tbody>
{% for r in m.by_language %}<tr><td>{{ r.model }}</td>{% for cell in r.cells %}<td>{{ cell|nobidi }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% endif %}
{% endif %}
<h4>Language sensitivity</h4>
<table class="mc-table"><thead><tr><th>Model</th><th>Mean JS distance between languages</th><th>Languages that move it most</th><th>Questions that move most</th></tr></thead><tbody>
{% for r in m.sensitivity %}<tr><td>{{ r.model }}</td><td>{{ r.value }}</td><td>{{ r.langs|nobidi }}</td><td>{% for q in r.questions %}{{ q|nobidi }}{% if not loop.last %}<br>{% endif %}{% endfor %}</td></tr>{% endfor %}
</tbody></table>
{% if m.sens_fig is not none %}<div class="mc-figure" id="perspectives-fig-{{ m.sens_fig }}"></div>{% endif %}
<h4>Value homogeneity</h4>
<p>{{ m.homogeneity }}</p>
{% if m.hom_fig is not none %}<div class="mc-figure" id="perspectives-fig-{{ m.hom_fig }}"></div>{% endif %}
{% if m.steering %}
<h4>Steerability under cultural prompting</h4>
<table class="mc-table"><thead><tr><th>Model</th><th>Asked as a person in</th><th>Answers moved (JS)</th><th>Similarity to that country</th><th>Change</th><th>Rank</th></tr></thead><tbody>
{% for s in m.steering %}<tr><td>{{ s.model }}</td><td>{{ s.country }}</td><td>{{ s.shift }}</td><td>{{ s.sims }}</td><td>{{ s.delta }}</td><td>{{ s.rank }}</td></tr>{% endfor %}
</tbody></table>
{% endif %}
{% if m.outcomes %}
<h4>Answers that chose no option</h4>
<p>Every sampled answer is counted: refusals, ambiguous answers (two options) and unparseable ones are
left out of the distributions, and shown here so that a model that mostly declines is not read as
one with firm views.</p>
<table class="mc-table"><thead><tr><th>Model</th>{% for o in outcome_names %}<th>{{ o }}</th>{% endfor %}</tr></thead><tbody>
{% for r in m.outcomes %}<tr><td>{{ r.model }}</td>{% for v in r.counts %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
{% if m.examples %}
<p>Examples:</p>
<ul class="mc-examples">{% for e in m.examples %}<li><strong>{{ e.model|bdi }}</strong> ({{ e.outcome }}, {{ e.item|bdi }}): <q dir="auto">{{ e.text }}</q></li>{% endfor %}</ul>
{% endif %}
{% endif %}
{% endfor %}
<h4>How to read these numbers</h4>
<dl class="mc-defs">
<dt>Similarity to a country</dt><dd>1 minus the Jensen-Shannon distance (base 2) between the model's and the country's
option shares on a question, averaged over the questions both answered (and over the languages the model was asked in).
1: identical shares; 0: no option in common. "Ordered-scale similarity" is 1 minus the Wasserstein-1 distance divided by
its maximum, on questions whose options form a scale, so that "agree" counts as near "strongly agree".</dd>
<dt>First in x of draws</dt><dd>The share of bootstrap resamples of the questions in which that country ranks first: how
firmly the ranking holds, not a probability that the model "is" from there.</dd>
<dt>Language sensitivity</dt><dd>The mean JS distance between a model's answers to the same question in two languages; 0
means the language of the question changes nothing. A language that "moves it most" is the one whose answers lie
furthest from the model's answers in the other languages.</dd>
<dt>Value homogeneity</dt><dd>The mean pairwise JS distance among models next to the same among countries, on the same
questions. A ratio below 1 means the models agree with each other more than nations do.</dd>
<dt>Steerability</dt><dd>How far "answer as a typical person living in &lt;country&gt;" moves the answers, and the change in
similarity to that country's actual shares; a model can move a lot and still move the wrong way.</dd>
</dl>
</div>
"""
)

OUTCOME_NAMES = ("ok", "refusal", "ambiguous", "unparseable", "empty", "error")


def _label(text) -> str:
    """Plotly reads a little HTML in labels (<b>, <a href>), so a model or country name would
    be rendered as markup; escaped (and its direction isolated) it is shown as the text it is."""
    return plot_label(text)


def _plain(fig) -> dict:
    """A figure as plain JSON types, whatever plotly version built it."""
    return json.loads(fig.to_json())


def _heatmap(mr: MethodResult, title: str) -> dict | None:
    import plotly.graph_objects as go

    models = [m for m, r in mr.models.items() if r.countries]
    if not models:
        return None
    best: dict[str, float] = {}
    for m in models:
        for c in mr.models[m].countries:
            best[c.country] = max(best.get(c.country, -1.0), c.similarity)
    countries = sorted(best, key=lambda c: (-best[c], c))[:MAX_HEATMAP_COUNTRIES]
    z, text = [], []
    for m in models:
        got = {c.country: c for c in mr.models[m].countries}
        z.append([got[c].similarity if c in got else None for c in countries])
        text.append(
            [
                f"{got[c].similarity:.3f} [{got[c].lo:.3f}, {got[c].hi:.3f}], {got[c].n_questions} q" if c in got else ""
                for c in countries
            ]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[_label(c) for c in countries],
            y=[_label(m) for m in models],
            text=text,
            hovertemplate="%{y} ~ %{x}: %{text}<extra></extra>",
            colorscale="Viridis",
            colorbar={"title": "1 - JS"},
        )
    )
    fig.update_layout(
        title=title,
        height=max(260, 60 + 36 * len(models)),
        margin={"l": 140, "r": 20, "t": 50, "b": 90},
        xaxis={"tickangle": -45},
    )
    return _plain(fig)


def _sensitivity_fig(mr: MethodResult, title: str) -> dict | None:
    import plotly.graph_objects as go

    traces = []
    for m, r in mr.models.items():
        if r.sensitivity is None:
            continue
        langs = sorted(r.sensitivity.per_language)
        traces.append(go.Bar(name=_label(m), x=[_label(x) for x in langs], y=[r.sensitivity.per_language[x] for x in langs]))
    if not traces:
        return None
    fig = go.Figure(traces)
    fig.update_layout(
        title=title, barmode="group", yaxis={"title": "mean JS distance to the other languages"}, height=340, margin={"t": 50}
    )
    return _plain(fig)


def _homogeneity_fig(mr: MethodResult, title: str) -> dict | None:
    import plotly.graph_objects as go

    h = mr.homogeneity
    if h is None or h.countries is None:
        return None
    names = [f"among {h.n_models} models", f"among {h.n_countries} countries"]
    vals = [h.models, h.countries]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[v[0] for v in vals],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [v[2] - v[0] for v in vals],
                "arrayminus": [v[0] - v[1] for v in vals],
            },
        )
    )
    fig.update_layout(
        title=title, yaxis={"title": "mean pairwise JS distance", "rangemode": "tozero"}, height=320, margin={"t": 50}
    )
    return _plain(fig)


def _homogeneity_text(mr: MethodResult) -> str:
    h = mr.homogeneity
    if h is None:
        return "Needs at least two models that answered the same questions."
    if h.countries is None or h.difference is None:
        return f"Mean pairwise JS distance among the {h.n_models} models: {_ci(h.models)} on {h.n_questions} questions. Load country data to compare with nations."
    d = h.difference
    verdict = (
        "the models are more alike in these answers than the countries are"
        if d[2] < 0
        else "the models differ from each other more than the countries do"
        if d[1] > 0
        else "the interval does not separate the models' spread from the countries'"
    )
    return (
        f"Mean pairwise JS distance among the {h.n_models} models: {_ci(h.models)}; among the {h.n_countries} countries: "
        f"{_ci(h.countries)}, on the {h.n_questions} questions both answered. Ratio models / countries {_ci(h.ratio)}, "
        f"difference {_ci(d)}: {verdict}."
    )


def build_section(results: PerspectiveResults) -> dict:
    figures: list[dict] = []

    def add(fig):
        if fig is None:
            return None
        figures.append(fig)
        return len(figures) - 1

    has_countries = bool(results.countries)
    methods = []
    for method, mr in results.methods.items():
        title = METHOD_TITLES.get(method, method)
        rows, by_language, sens, steering, outcomes = [], [], [], [], []
        languages = sorted({lang for r in mr.models.values() for lang in r.by_language})
        for model, r in mr.models.items():
            rows.append(
                {
                    "model": model,
                    "n_questions": r.n_questions,
                    "top": [
                        {
                            "country": c.country,
                            "sim": _f(c.similarity),
                            "lo": _f(c.lo),
                            "hi": _f(c.hi),
                            "ptop": f"{c.p_top:.0%}",
                            "n": c.n_questions,
                            "w1": _f(c.w1) if c.n_ordered else None,
                        }
                        for c in r.countries[:3]
                    ],
                }
            )
            if r.by_language:
                by_language.append(
                    {
                        "model": model,
                        "cells": [
                            f"{r.by_language[x].country} ({_f(r.by_language[x].similarity)})" if x in r.by_language else "–"
                            for x in languages
                        ],
                    }
                )
            s = r.sensitivity
            sens.append(
                {
                    "model": model,
                    "value": f"{_ci((s.mean, s.lo, s.hi))} on {s.n_questions} questions" if s else "asked in one language only",
                    "langs": moved_most(s, 3),
                    "questions": [f"{g}: {_clip(results.questions.get(g, ''), 80)} ({_f(v)})" for g, v in s.top_questions[:3]]
                    if s
                    else [],
                }
            )
            for st in r.steering:
                steering.append(
                    {
                        "model": model,
                        "country": st.country,
                        "shift": _ci(st.shift),
                        "sims": f"{_f(st.base)} → {_f(st.steered)}" if st.delta else "no data for this country",
                        "delta": _ci(st.delta) if st.delta else "–",
                        "rank": f"{st.rank_before or '–'} → {st.rank_after or '–'} of {st.n_countries}" if st.delta else "–",
                    }
                )
            if r.outcomes:
                outcomes.append({"model": model, "counts": [r.outcomes.get(o, 0) for o in OUTCOME_NAMES]})
        mass_note = None
        if method == "logprobs":
            masses = [(m, r.option_mass, r.no_mass) for m, r in mr.models.items()]
            parts = [f"{m}: {_f(x)}" + (f" ({n} items with none)" if n else "") for m, x, n in masses if x is not None or n]
            if parts:
                mass_note = (
                    "Probability the models put on the option letters before renormalising (low values mean the distribution rests on little mass): "
                    + "; ".join(parts)
                    + "."
                )
        examples = results.examples.get(method, [])
        methods.append(
            {
                "title": title,
                "rows": rows,
                "languages": languages,
                "by_language": by_language if len(languages) > 1 else [],
                "sensitivity": sens,
                "homogeneity": _homogeneity_text(mr),
                "steering": steering,
                "outcomes": outcomes,
                "examples": examples,
                "mass_note": mass_note,
                "heatmap": add(_heatmap(mr, f"Similarity to countries ({title.lower()})")) if has_countries else None,
                "sens_fig": add(_sensitivity_fig(mr, "How far each language moves the answers")),
                "hom_fig": add(_homogeneity_fig(mr, "Are models more alike than countries?")),
            }
        )
    html = TEMPLATE.render(
        methods=methods,
        has_countries=has_countries,
        b=results.b,
        seed=results.seed,
        outcome_names=OUTCOME_NAMES,
        min_q=MIN_QUESTIONS,
    )
    return {
        "title": "Perspectives",
        "html": html,
        "figures": figures,
        "figure_ids": [f"perspectives-fig-{i}" for i in range(len(figures))],
    }


def perspectives_section(store, *, study: str | None = None, b: int = DEFAULT_B, seed: int = DEFAULT_SEED) -> dict | None:
    """The section for the study report, or None when the store has no probe data. ``study``
    keeps to the models that study probed or ran."""
    results = load_results(store, study=study, b=b, seed=seed)
    if results is None or not results.methods:
        return None
    from monoculture.probes import store as pstore

    models = sorted({m for mr in results.methods.values() for m in mr.models})
    ex = pstore.unparsed_examples(store, models) if "sample" in results.methods else None
    results.examples = {
        "sample": [
            {"model": r.model, "outcome": r.outcome, "item": r.item_id, "text": _clip(r.text)} for r in ex.itertuples(index=False)
        ]
        if ex is not None
        else []
    }
    return build_section(results)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def standalone_page(section: dict, title: str = "Perspectives") -> str:
    """A self-contained page: the fragment, plotly.js inlined (no network), the figures drawn."""
    from html import escape

    from plotly.offline import get_plotlyjs

    plotly_js, plotly_hash = inline_script(get_plotlyjs())
    draw_js, draw_hash = inline_script(_DRAW_JS)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{escape(content_security_policy([plotly_hash, draw_hash]))}">'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        ".mc-table{border-collapse:collapse;margin:.5em 0}.mc-table td,.mc-table th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}"
        ".mc-caveat{background:#fff6e0;padding:.6em}.mc-figure{min-height:200px}</style>"
        f"<script>{plotly_js}</script></head><body>"
        f"<h2>{escape(section['title'])}</h2>{section['html']}"
        f'<script id="perspectives-figures" type="application/json">{script_json(section["figures"])}</script>'
        f"<script>{draw_js}</script>"
        "</body></html>"
    )


# Draws the figures of a standalone page; its hash is what the page's policy allows.
_DRAW_JS = (
    "(function(){var figs=JSON.parse(document.getElementById('perspectives-figures').textContent);"
    "figs.forEach(function(f,i){var el=document.getElementById('perspectives-fig-'+i);"
    "if(el){Plotly.newPlot(el,f.data,f.layout,{displaylogo:false,responsive:true});}});})();"
)
