"""The report's "Over time" section: the trend analysis of the dated models, drawn.

It shows the series of :func:`monoculture.trends.analysis.trend_analysis` with their intervals
(bands for the windows' series, bars for the releases', several of which may share a day), the cohort table (homogeneity and voices per window), each slope with its interval and
permutation p, and the release dates with their sources, so a reader can check every date. The
section appears only when at least three measured models have a release date; with fewer there
is no trend to show, and the section is absent rather than empty.

Model names reach the page only as data: as text in the tables (autoescaped by the template)
and through :func:`~monoculture.report.htmlsafe.plot_label` in the figures' hover texts.
"""

from __future__ import annotations

from typing import Any

from monoculture.errors import UserError
from monoculture.report import figures as F

#: (figure name, title, series drawn, y axis, caption)
FIGURES = (
    (
        "over_time_earlier",
        "Each release against the field before it",
        ("similarity_to_earlier", "nearest_earlier"),
        "similarity C",
        "One point per model at its release date: the mean similarity C of its answers to those of every model "
        "released before it, and to its nearest earlier peer. A rising series: each release sounds more like what "
        "already existed. Bars: the bootstrap interval (prompts and models resampled).",
    ),
    (
        "over_time_centre",
        "Distance to the field's centre at release",
        ("distance_to_centre",),
        "distance to the centroid",
        "The distance of each model's mean answer embedding to the centroid of the models released before it. "
        "A falling series: new releases land closer to the middle of the field. Bars: the bootstrap interval.",
    ),
    (
        "over_time_cohorts",
        "Homogeneity within each cohort",
        ("homogeneity",),
        "homogeneity H",
        "Mean similarity H between the models released in each window. Bands: the bootstrap interval.",
    ),
    (
        "over_time_voices",
        "Voices among contemporaries, at an equal number of models",
        ("voices_equal_n", "voices"),
        "voices per prompt",
        "Voices among the models of each window, as the mean over seeded random subsets of n models (equal n), and "
        "raw (all the window's models). Raw voices grow with the number of models, so only the equal-n series is "
        "comparable across windows and gets a slope.",
    ),
)
COLOURS = ("#1f5fa8", "#c2571a")
PER_MODEL = ("similarity_to_earlier", "nearest_earlier", "distance_to_centre")
LABELS = {
    "similarity_to_earlier": "similarity to the earlier field",
    "nearest_earlier": "nearest earlier peer",
    "distance_to_centre": "distance to the centre",
    "homogeneity": "homogeneity H",
    "voices_equal_n": "voices, equal n",
    "voices": "voices, all models (raw)",
}


def _band_traces(points: list[dict], name: str, colour: str, *, dash: str | None = None) -> list:
    import plotly.graph_objects as go

    xs = [p["date"] for p in points]
    ys = [p["value"] for p in points]
    lo = [p["ci"][0] for p in points]
    hi = [p["ci"][1] for p in points]
    hover = [
        F.label(
            f"{LABELS.get(name, name)}: {F.fmt(p['value'])} [{F.fmt(p['ci'][0])}, {F.fmt(p['ci'][1])}]"
            f" · {p.get('label') or p['date']} · "
            + (", ".join(p["models"][:6]) + (f" and {len(p['models']) - 6} more" if len(p["models"]) > 6 else ""))
        )
        for p in points
    ]
    if name in PER_MODEL:  # one point per release, several on one day: interval bars, no line
        return [
            go.Scatter(
                x=xs,
                y=ys,
                mode="markers",
                name=LABELS.get(name, name),
                marker={"color": colour, "size": 7},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [h - v if h is not None else 0 for v, h in zip(ys, hi)],
                    "arrayminus": [v - lo_ if lo_ is not None else 0 for v, lo_ in zip(ys, lo)],
                    "color": colour,
                    "thickness": 1,
                    "width": 2,
                },
                hovertext=hover,
                hoverinfo="text",
            )
        ]
    return [
        *F.interval_band(xs, lo, hi, colour, 0.18),
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            name=LABELS.get(name, name),
            line={"color": colour, "dash": dash} if dash else {"color": colour},
            marker={"color": colour, "size": 7},
            hovertext=hover,
            hoverinfo="text",
        ),
    ]


def _figures(series: dict[str, list[dict]]) -> list[F.Figure]:
    import plotly.graph_objects as go

    out = []
    for name, title, names, axis, caption in FIGURES:
        traces = []
        for i, s in enumerate(names):
            pts = [p for p in series.get(s) or [] if p.get("value") is not None]
            if pts:
                traces += _band_traces(pts, s, COLOURS[i % len(COLOURS)], dash="dot" if s == "voices" else None)
        if not traces:
            continue
        layout = F._base_layout(
            xaxis={"title": {"text": "release date"}, "type": "date"},
            yaxis={"title": {"text": axis}, "zeroline": False},
            legend={"orientation": "h", "y": -0.2},
            hovermode="closest",
        )
        out.append(F.Figure(name=name, title=title, caption=caption, fig=go.Figure(traces, layout), height=420))
    return out


def _ci(v: Any, lo: Any, hi: Any) -> dict:
    return {"value": F.fmt(v), "lo": F.fmt(lo), "hi": F.fmt(hi)}


def section_data(result: dict) -> dict:
    """The template's rows from a trend result's ``to_json_dict()``: cohorts, slopes, dates."""
    s = result.get("series") or {}
    cohorts: dict[str, dict] = {}
    for name in ("homogeneity", "voices", "voices_equal_n"):
        for p in s.get(name) or []:
            row = cohorts.setdefault(
                p["date"], {"label": p.get("label") or p["date"], "models": p.get("n_models") or len(p["models"])}
            )
            row[name] = _ci(p.get("value"), *(p.get("ci") or [None, None]))
            if name == "voices_equal_n":
                row["n"] = p.get("n")
    slopes = [
        {
            "series": LABELS.get(x["series"], x["series"])
            + (
                f" (excess over the shuffled-date drift; raw {F.fmt(x.get('raw'))})"
                if x.get("tested", "slope") != "slope"
                else ""
            ),
            "group": x.get("group") or "all models",
            **_ci(x.get("value"), *(x.get("ci") or [None, None])),
            "p": F.pvalue(x.get("p")),
            "models": x.get("models"),
            "few": bool(x.get("few_models")),
        }
        for x in result.get("slopes") or []
    ]
    return {
        "cohorts": [cohorts[k] for k in sorted(cohorts)],
        "slopes": slopes,
        "dates": result.get("models") or [],
        "undated": result.get("undated") or {"count": 0, "models": []},
        "settings": result.get("settings") or {},
        "notes": list(result.get("notes") or []),
    }


def over_time_section(store, label: str | None, notes: list[str], **options: Any) -> tuple[dict | None, list[F.Figure]]:
    """(the section's data, its figures), or (None, []) when fewer than three measured models
    are dated. Any other failure leaves the section out with a note naming it, so the rest of
    the report still appears and the failure is seen."""
    try:
        from monoculture.trends.analysis import MIN_MODELS, trend_analysis

        result = trend_analysis(store, label=label, **options).to_json_dict()
    except UserError as e:
        if "needs at least" in str(e) and "release date" in str(e):
            return None, []  # too few dated models: no trend to show
        notes.append(f"over time section left out: {e}")
        return None, []
    except Exception as e:  # noqa: BLE001 - one failing section must not cost the whole report
        notes.append(f"over time section left out: {type(e).__name__}: {e}")
        return None, []
    if int(result.get("dated") or 0) < MIN_MODELS:
        return None, []
    figs = _figures(result.get("series") or {})
    return section_data(result), figs
