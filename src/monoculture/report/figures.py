"""The report's figures, built from a stored measurement.

Each figure is a plotly Figure plus the one-line caption the page prints under it, so a figure
never appears without the sentence saying what to look for. Every string that came from the
store (model names, attribute values) goes through :func:`label` first: plotly reads a little
HTML in labels, and a model name is data, not markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monoculture.report.htmlsafe import plot_label

# Viridis: perceptually even and readable in greyscale print; the PNG test looks for it.
SIMILARITY_SCALE = "Viridis"
SEPARABILITY_SCALE = "Blues"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
]
ATTRIBUTE_ORDER = ("family", "organisation", "country", "open_weights")


@dataclass
class Figure:
    """A figure of the report: its id (also the export file name), title and caption."""

    name: str
    title: str
    caption: str
    fig: Any  # plotly.graph_objects.Figure, or a plain figure dict from another section
    width: int = 900
    height: int = 600
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON types, whatever plotly version built it."""
        import json

        if isinstance(self.fig, dict):
            return self.fig
        return json.loads(self.fig.to_json())


def label(text: Any) -> str:
    """A data string made safe for plotly's label markup (shown as the text it is, its
    direction isolated): :func:`monoculture.report.htmlsafe.plot_label`."""
    return plot_label(text)


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(xf):
        return "n/a"
    return f"{xf:.{digits}f}"


def num(x: Any) -> float | None:
    """A summary's value as a finite float, or None (missing, not a number, NaN or infinite):
    JSON-read summaries and frames hold all of these, and the pages show each as a gap."""
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return None
    return xf if math.isfinite(xf) else None


def rgba(colour: str, alpha: float) -> str:
    """``#rrggbb`` with an opacity, for the translucent interval bands under a line."""
    return f"rgba({int(colour[1:3], 16)}, {int(colour[3:5], 16)}, {int(colour[5:7], 16)}, {alpha})"


def interval_band(xs, lo, hi, colour: str, alpha: float, **kw) -> list:
    """An interval as a translucent band: the upper edge, then the lower one filled up to it,
    both without lines, hover or legend entry (``kw``, e.g. legendgroup, goes to both)."""
    import plotly.graph_objects as go

    edge = {"mode": "lines", "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False, **kw}
    return [
        go.Scatter(x=xs, y=hi, **edge),
        go.Scatter(x=xs, y=lo, fill="tonexty", fillcolor=rgba(colour, alpha), **edge),
    ]


def _finite(a) -> np.ndarray:
    return np.isfinite(np.asarray(a, dtype=float))


def label_margin(names: list[str], angle: bool = False) -> int:
    """Pixels that the longest tick label needs (about 7 px a character at 12 px type)."""
    n = max((len(str(x)) for x in names), default=4)
    return int(min(260, max(60, 7 * n + 20)) * (0.9 if angle else 1.0))


def _base_layout(title: str | None = None, **kw) -> dict:
    layout = dict(
        font={"family": FONT, "size": 12},
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin={"l": 60, "r": 30, "t": 50 if title else 20, "b": 50},
    )
    if title:
        layout["title"] = {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 14}}
    layout.update(kw)
    return layout


# -- clustering and the map -------------------------------------------------------------------


def distance_matrix(C: np.ndarray) -> np.ndarray:
    """1 - C as a proper distance: zero diagonal (W may be undefined with k = 1), symmetric, and
    pairs that never shared a prompt set to the largest observed distance."""
    D = 1.0 - np.asarray(C, dtype=float)
    D = (D + D.T) / 2.0
    off = ~np.eye(len(D), dtype=bool)
    finite = np.isfinite(D) & off
    fill = float(D[finite].max()) if finite.any() else 1.0
    D = np.where(np.isfinite(D), D, fill)
    np.fill_diagonal(D, 0.0)
    return np.clip(D, 0.0, None)


def cluster_order(C: np.ndarray) -> tuple[list[int], dict | None]:
    """Leaf order of an average-linkage tree on 1 - C (optimal leaf ordering, so neighbours in
    the heatmap are as alike as the tree allows) and scipy's dendrogram coordinates."""
    n = len(C)
    if n < 3:
        return list(range(n)), None
    from scipy.cluster.hierarchy import dendrogram, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    y = squareform(distance_matrix(C), checks=False)
    Z = linkage(y, method="average")
    try:
        Z = optimal_leaf_ordering(Z, y)
    except Exception:  # noqa: BLE001 - ordering is cosmetic; the plain tree is still right
        pass
    d = dendrogram(Z, no_plot=True)
    return [int(i) for i in d["leaves"]], d


def classical_mds(D: np.ndarray, dims: int = 2) -> tuple[np.ndarray, float]:
    """Torgerson MDS: deterministic (no random start), exact for Euclidean distances. Returns
    the coordinates and the share of positive eigenvalue mass the axes keep."""
    n = len(D)
    J = np.eye(n) - 1.0 / n
    B = -0.5 * J @ (D**2) @ J
    w, V = np.linalg.eigh((B + B.T) / 2.0)
    idx = np.argsort(w)[::-1]
    w, V = w[idx], V[:, idx]
    pos = w.clip(min=0)
    X = V[:, :dims] * np.sqrt(pos[:dims])
    if X.shape[1] < dims:
        X = np.c_[X, np.zeros((n, dims - X.shape[1]))]
    for j in range(dims):  # a fixed sign, so the map does not flip between runs
        k = int(np.argmax(np.abs(X[:, j])))
        if X[k, j] < 0:
            X[:, j] *= -1
    kept = float(pos[:dims].sum() / pos.sum()) if pos.sum() > 0 else 1.0
    return X, kept


# -- figures ---------------------------------------------------------------------------------


def similarity_heatmap(
    C: pd.DataFrame, n_prompts: pd.DataFrame | None, order: list[int], dendro: dict | None, floor: float | None, calibrated: bool
) -> Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = list(C.index)
    M = len(models)
    Z = C.to_numpy(dtype=float)[np.ix_(order, order)]
    names = [label(models[i]) for i in order]
    N = n_prompts.to_numpy()[np.ix_(order, order)] if n_prompts is not None else np.full((M, M), np.nan)
    custom = np.dstack(
        [
            np.array([[names[j] for j in range(M)] for _ in range(M)]),
            np.array([[names[i]] * M for i in range(M)]),
            np.where(np.isfinite(N), N, -1).astype(int).astype(str),
        ]
    )
    zt = [[None if not np.isfinite(v) else float(v) for v in row] for row in Z]
    heat = go.Heatmap(
        z=zt,
        x=list(range(M)),
        y=list(range(M)),
        customdata=custom.tolist(),
        colorscale=SIMILARITY_SCALE,
        colorbar={"title": {"text": "C"}, "len": 0.75, "y": 0.4},
        hovertemplate="%{customdata[1]} × %{customdata[0]}<br>C = %{z:.3f} on %{customdata[2]} prompts<extra></extra>",
        hoverongaps=False,
    )
    lm = label_margin(names)
    size = max(520, 24 * M + 90 + lm)
    if dendro is not None:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.16, 0.84], vertical_spacing=0.005)
        for xs, ys in zip(dendro["icoord"], dendro["dcoord"]):
            fig.add_trace(
                go.Scatter(
                    x=[(x - 5) / 10 for x in xs],
                    y=ys,
                    mode="lines",
                    line={"color": "#555", "width": 1},
                    hoverinfo="skip",
                    showlegend=False,
                ),
                row=1,
                col=1,
            )
        fig.add_trace(heat, row=2, col=1)
        fig.update_yaxes(
            showticklabels=False, showgrid=False, zeroline=False, title={"text": "1 − C", "font": {"size": 10}}, row=1, col=1
        )
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, row=1, col=1)
        hx, hy = "xaxis2", "yaxis2"
    else:
        fig = go.Figure(heat)
        hx, hy = "xaxis", "yaxis"
    fig.update_layout(**_base_layout(None, height=size, width=size + 120, margin={"l": lm, "r": 20, "t": 20, "b": lm}))
    fig.update_layout(
        **{
            hx: {
                "tickmode": "array",
                "tickvals": list(range(M)),
                "ticktext": names,
                "tickangle": -60,
                "showgrid": False,
                "range": [-0.5, M - 0.5],
            },
            hy: {"tickmode": "array", "tickvals": list(range(M)), "ticktext": names, "autorange": "reversed", "showgrid": False},
        }
    )
    if dendro is not None:
        fig.update_layout(xaxis={"range": [-0.5, M - 0.5]})
    kind = "calibrated" if calibrated else "raw"
    cap = (
        f"Bright blocks are models that answer alike; the tree above groups them. Cells are mean {kind} cosine "
        f"similarity C of two models' answers to the same prompt"
    )
    cap += f", against an off-prompt floor of {fmt(floor)}." if floor is not None else "."
    if not np.isfinite(np.diag(C.to_numpy(dtype=float))).any():
        cap += " The diagonal (W) is blank: each model answered each prompt once."
    return Figure("similarity", "Model × model similarity", cap, fig, width=size + 120, height=size)


def model_map(C: pd.DataFrame, attrs: dict[str, dict], per_model: pd.DataFrame | None) -> Figure:
    import plotly.graph_objects as go

    models = list(C.index)
    D = distance_matrix(C.to_numpy(dtype=float))
    X, kept = classical_mds(D)
    attributes = available_attributes(attrs, models)
    peer = {}
    if per_model is not None and "nearest_peer" in per_model.columns:
        peer = {
            m: (per_model.at[m, "nearest_peer"], per_model.at[m, "nearest_peer_similarity"])
            for m in models
            if m in per_model.index
        }

    def hover(m):
        parts = [f"<b>{label(m)}</b>"]
        for a in attributes:
            v = attrs.get(m, {}).get(a)
            if v is not None:
                parts.append(f"{label(a)}: {label(v)}")
        if m in peer and isinstance(peer[m][0], str):
            parts.append(f"nearest peer: {label(peer[m][0])} ({fmt(peer[m][1])})")
        return "<br>".join(parts)

    show_label = _label_placement(X, models)

    traces: list[go.Scatter] = []
    spans: list[tuple[str | None, int, int]] = []
    choices: list[str | None] = [*attributes] if attributes else [None]
    for a in choices:
        start = len(traces)
        groups: dict[str, list[str]]
        if a is None:
            groups = {"models": models}
        else:
            groups = {}
            for m in models:
                v = attrs.get(m, {}).get(a)
                groups.setdefault("unknown" if v is None else str(v), []).append(m)
        for gi, (g, members) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0] == "unknown", kv[0]))):
            idx = [models.index(m) for m in members]
            traces.append(
                go.Scatter(
                    x=X[idx, 0].tolist(),
                    y=X[idx, 1].tolist(),
                    mode="markers+text",
                    name=label(g),
                    text=[label(m) if show_label[m] else "" for m in members],
                    textposition="top center",
                    textfont={"size": 10},
                    marker={
                        "size": 12,
                        "color": "#bbbbbb" if g == "unknown" else PALETTE[gi % len(PALETTE)],
                        "line": {"width": 1, "color": "white"},
                    },
                    hovertext=[hover(m) for m in members],
                    hoverinfo="text",
                    visible=not spans,
                    legendgroup=a or "models",
                )
            )
        spans.append((a, start, len(traces)))
    fig = go.Figure(traces)
    layout = _base_layout(
        None,
        height=620,
        width=900,
        margin={"l": 40, "r": 20, "t": 60 if len(spans) > 1 else 20, "b": 40},
        xaxis={
            "title": {"text": "MDS 1"},
            "zeroline": False,
            "showticklabels": False,
            "gridcolor": "#eee",
            "range": _padded(X[:, 0], 0.15),
        },
        yaxis={
            "title": {"text": "MDS 2"},
            "zeroline": False,
            "showticklabels": False,
            "gridcolor": "#eee",
            "scaleanchor": "x",
            "range": _padded(X[:, 1], 0.12),
        },
        legend={"title": {"text": label(attributes[0]) if attributes else ""}},
    )
    if len(spans) > 1:
        buttons = []
        for a, s, e in spans:
            vis = [s <= i < e for i in range(len(traces))]
            buttons.append(
                {
                    "label": f"colour by {label(a)}",
                    "method": "update",
                    "args": [{"visible": vis}, {"legend.title.text": label(a)}],
                }
            )
        layout["updatemenus"] = [
            {
                "type": "buttons",
                "direction": "right",
                "x": 0,
                "y": 1.1,
                "xanchor": "left",
                "yanchor": "bottom",
                "buttons": buttons,
                "showactive": True,
                "font": {"size": 11},
            }
        ]
    fig.update_layout(**layout)
    colour = f"coloured by {attributes[0]}" if attributes else "no model attributes set, so one colour"
    cap = (
        f"Models close together answer alike (classical MDS of 1 − C; the two axes keep {kept:.0%} of the spread); "
        f"{colour}; crowded points are named on hover. Look for families that form their own island."
    )
    return Figure("map", "Map of models", cap, fig, width=900, height=620)


def _padded(v: np.ndarray, share: float) -> list[float]:
    """An axis range with room for the names printed at the edges."""
    lo, hi = float(np.min(v)), float(np.max(v))
    pad = (hi - lo) * share or 1.0
    return [lo - pad, hi + pad]


def _label_placement(X: np.ndarray, names: list[str], width: float = 760, height: float = 520) -> dict[str, bool]:
    """Which points get a printed name: greedily, most isolated first, wherever the name's box
    overlaps no name already placed and no other point. The rest are named on hover; a map
    of overprinted names says nothing."""
    n = len(names)
    lo, span = X.min(axis=0), np.ptp(X, axis=0)
    span[span == 0] = 1.0
    scale = min(width / span[0], height / span[1])  # equal aspect, as drawn
    P = (X - lo) * scale
    if n == 1:
        return {names[0]: True}
    D = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(-1)) + np.eye(n) * 1e9
    boxes: list[tuple[float, float, float, float]] = []
    out = {m: False for m in names}
    for i in np.argsort(-D.min(axis=1)):
        w = 6.2 * len(str(names[i])) + 4
        x0, x1 = P[i, 0] - w / 2, P[i, 0] + w / 2
        y0, y1 = P[i, 1] + 7, P[i, 1] + 21  # printed above the marker
        if any(not (x1 < a0 or x0 > a1 or y1 < b0 or y0 > b1) for a0, a1, b0, b1 in boxes):
            continue
        if any(j != i and x0 - 6 <= P[j, 0] <= x1 + 6 and y0 - 6 <= P[j, 1] <= y1 + 6 for j in range(n)):
            continue
        boxes.append((x0, x1, y0, y1))
        out[names[i]] = True
    return out


def available_attributes(attrs: dict[str, dict], models: list[str]) -> list[str]:
    """Attributes worth colouring by: set on some model, with at least two values or one
    value and some models without it. base_model is lineage, not a grouping."""
    keys: list[str] = []
    for a in list(ATTRIBUTE_ORDER) + sorted({k for m in models for k in attrs.get(m, {})}):
        if a in keys or a == "base_model":
            continue
        vals = [attrs.get(m, {}).get(a) for m in models]
        if isinstance(next((v for v in vals if v is not None), None), (dict, list)):
            continue
        distinct = {str(v) for v in vals if v is not None}
        if len(distinct) >= 2 or (distinct and any(v is None for v in vals)):
            keys.append(a)
    return keys


def _ci_bars(y, value, lo, hi, color, name, hover_extra, orientation="h", **kw):
    """Horizontal bars with their interval as error bars (none when ``lo`` is None)."""
    import plotly.graph_objects as go

    value = np.asarray(value, dtype=float)
    vals = [None if not np.isfinite(v) else float(v) for v in value]
    extra = {}
    if lo is not None and hi is not None:
        lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
        plus = np.where(np.isfinite(hi - value), hi - value, 0.0)
        minus = np.where(np.isfinite(value - lo), value - lo, 0.0)
        extra["error_x"] = {
            "type": "data",
            "symmetric": False,
            "array": plus.tolist(),
            "arrayminus": minus.tolist(),
            "color": "#333",
            "thickness": 1.2,
            "width": 3,
        }
    return go.Bar(
        y=y,
        x=vals,
        orientation=orientation,
        name=name,
        marker={"color": color},
        hovertext=hover_extra,
        hoverinfo="text",
        **extra,
        **kw,
    )


def leave_one_out(per_model: pd.DataFrame, groups: pd.DataFrame | None, level: float) -> Figure | None:
    import plotly.graph_objects as go

    if "loo" not in per_model.columns or not _finite(per_model["loo"]).any():
        return None
    pm = per_model[_finite(per_model["loo"])].sort_values("loo")
    names = [label(m) for m in pm.index]
    colors = ["#2b8cbe" if v >= 0 else "#e34a33" for v in pm["loo"]]
    hov = [
        f"<b>{label(m)}</b><br>L = {fmt(r.loo)} [{fmt(r.loo_lo)}, {fmt(r.loo_hi)}]<br>{int(r.loo_prompts)} prompts"
        for m, r in pm.iterrows()
    ]
    fig = go.Figure(_ci_bars(names, pm["loo"], pm["loo_lo"], pm["loo_hi"], colors, "L_m", hov, showlegend=False))
    base = None
    if groups is not None and len(groups) and "size" in groups.columns:
        ones = groups[groups["size"] == 1]
        if len(ones) and _finite(ones["baseline"]).any():
            base = float(ones["baseline"].iloc[0])
    if base is None:
        base = float(np.nanmean(pm["loo"]))
    fig.add_vline(
        x=base,
        line={"dash": "dash", "color": "#666"},
        annotation_text=f"a random model: {fmt(base)}",
        annotation_position="top",
        annotation_font={"size": 11},
    )
    fig.add_vline(x=0, line={"color": "#999", "width": 1})
    h = max(320, 22 * len(pm) + 110)
    fig.update_layout(
        **_base_layout(
            None,
            height=h,
            width=900,
            margin={"l": label_margin(names), "r": 30, "t": 40, "b": 50},
            bargap=0.25,
            xaxis={"title": {"text": "voices lost per prompt without the model (L_m)"}, "gridcolor": "#eee", "zeroline": False},
        )
    )
    cap = (
        f"How many voices per prompt the field loses if a model goes away, with {level:.0%} intervals; bars right of the dashed "
        "line (losing a model at random) mark models with a voice of their own, bars left of 0 mark near-copies."
    )
    return Figure("leave_one_out", "What the field loses without each model", cap, fig, width=900, height=h)


def pvalue(p: Any, n_boot: int | None = None) -> str:
    """A p-value as text; 0 from B resamples means below 1/B, not impossible."""
    x = None
    try:
        x = float(p)
    except (TypeError, ValueError):
        pass
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return f"< {1 / n_boot:.3g}" if n_boot else "< 0.001"
    return f"= {x:.3f}" if x < 0.1 else f"= {x:.2f}"


def group_losses(groups: pd.DataFrame, level: float, n_boot: int | None = None) -> Figure | None:
    """Groups differ in size, and losing 22 models costs more than losing 2 whoever they are,
    so bars show each group's loss beyond as many models drawn at random (0 = no more than
    chance); raw L_G and its baseline are in the hover."""
    import plotly.graph_objects as go

    if groups is None or not len(groups) or "excess" not in groups.columns or not _finite(groups["excess"]).any():
        return None
    g = groups[_finite(groups["excess"])].copy()
    attr_rank = {a: i for i, a in enumerate(ATTRIBUTE_ORDER)}
    g["arank"] = [attr_rank.get(a, len(attr_rank)) for a in g["attribute"]]
    g = g.sort_values(["arank", "attribute", "excess"], ascending=[True, True, False])
    names = [f"{label(r.attribute)}: {label(r.group)} ({int(r.size)})" for r in g.itertuples()]
    hov = [
        f"<b>{label(r.attribute)} = {label(r.group)}</b> ({int(r.size)} models)<br>L_G = {fmt(r.loss)} [{fmt(r.loss_lo)}, {fmt(r.loss_hi)}]"
        f"<br>{int(r.size)} random models: {fmt(r.baseline)} [{fmt(r.baseline_lo)}, {fmt(r.baseline_hi)}]"
        f"<br>beyond random: {fmt(r.excess)} [{fmt(r.excess_lo)}, {fmt(r.excess_hi)}], p {pvalue(r.excess_p, n_boot)}"
        f"<br>{int(r.loss_prompts)} prompts"
        for r in g.itertuples()
    ]
    colors = [
        "#2b8cbe"
        if (np.isfinite(r.excess_lo) and r.excess_lo > 0)
        else "#e34a33"
        if (np.isfinite(r.excess_hi) and r.excess_hi < 0)
        else "#9ecae1"
        for r in g.itertuples()
    ]
    fig = go.Figure(_ci_bars(names, g["excess"], g["excess_lo"], g["excess_hi"], colors, "beyond random", hov, showlegend=False))
    fig.add_vline(
        x=0,
        line={"dash": "dash", "color": "#666"},
        annotation_text="as many random models",
        annotation_position="top",
        annotation_font={"size": 11},
    )
    h = max(320, 22 * len(g) + 120)
    fig.update_layout(
        **_base_layout(
            None,
            height=h,
            width=900,
            margin={"l": label_margin(names), "r": 30, "t": 40, "b": 50},
            bargap=0.25,
            yaxis={"autorange": "reversed"},
            xaxis={
                "title": {"text": "voices lost per prompt without the group, minus as many random models (L_G − baseline)"},
                "gridcolor": "#eee",
                "zeroline": False,
            },
        )
    )
    cap = (
        f"What the field would lose if a whole group went quiet, beyond losing as many models at random (dashed line), with "
        f"{level:.0%} intervals; dark bars right of the line are groups with a voice nobody else has, pale bars are not told apart from chance."
    )
    return Figure("groups", "What the field loses without each group", cap, fig, width=900, height=h)


def diversity(per_model: pd.DataFrame, lexical: pd.DataFrame | None, order: list[str]) -> Figure | None:
    from plotly.subplots import make_subplots

    panels: list[tuple[str, str, pd.Series, pd.Series | None, pd.Series | None, pd.Series | None]] = []

    def add(title, axis, col):
        if col in per_model.columns and _finite(per_model[col]).any():
            panels.append(
                (
                    title,
                    axis,
                    per_model[col],
                    per_model.get(f"{col}_lo"),
                    per_model.get(f"{col}_hi"),
                    per_model.get(f"{col}_prompts"),
                )
            )

    add("Same answer every time? (W)", "within-model similarity W", "W")
    add("Own range (voices among its k answers)", "V_m", "own_range")
    add("Distinct answers per prompt", "distinct_k", "distinct_k")
    lex_kind = None
    if lexical is not None and len(lexical):
        lex_kind, lex_panels = _lexical_panels(lexical)
        panels += lex_panels
    if not panels:
        return None
    models = [m for m in order if m in per_model.index]
    names = [label(m) for m in models]
    length = None
    if lexical is not None and {"tokens", "texts"} <= set(lexical.columns):
        length = lexical["tokens"].astype(float) / lexical["texts"].astype(float).where(lexical["texts"] > 0)
    fig = make_subplots(
        rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=[label(p[0]) for p in panels], horizontal_spacing=0.03
    )
    for i, (_title, axis, v, lo, hi, n) in enumerate(panels, start=1):
        v = v.reindex(models)
        lo = lo.reindex(models) if lo is not None else None
        hi = hi.reindex(models) if hi is not None else None
        nn = n.reindex(models) if n is not None else None
        hov = [
            f"<b>{label(m)}</b><br>{label(axis)} = {fmt(v[m])}"
            + (f" [{fmt(lo[m])}, {fmt(hi[m])}]" if lo is not None and hi is not None else "")
            + (f"<br>{int(nn[m])} prompts" if nn is not None and np.isfinite(nn[m]) else "")
            + (
                f"<br>{fmt(length[m], 0)} tokens per answer"
                if axis in LEXICAL_AXES and length is not None and m in length.index
                else ""
            )
            for m in models
        ]
        fig.add_trace(_ci_bars(names, v, lo, hi, PALETTE[i - 1], label(axis), hov, showlegend=False), row=1, col=i)
    h = max(340, 22 * len(models) + 130)
    w = max(900, 260 * len(panels) + 180)
    fig.update_layout(
        **_base_layout(None, height=h, width=w, margin={"l": label_margin(names), "r": 20, "t": 50, "b": 40}, bargap=0.25)
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(gridcolor="#eee")
    for a in fig.layout.annotations:
        a.font = {"size": 11}
    k1 = not any(p[1] in ("within-model similarity W", "V_m") for p in panels)
    cap = "Within-model diversity: a model with high W or few distinct answers says the same thing whenever it is asked."
    if k1:
        cap = "One answer per model and prompt (k = 1), so W and own range are undefined."
    if lex_kind == "per_prompt":
        cap += (
            " Lexical panels are per-prompt means: n-gram diversity and compression ratio of a model's answers to one prompt, "
            "averaged over prompts with equal weight (whole-model figures fall as answers grow longer, which would make verbose "
            "models look repetitive); low diversity and high compression mean repetitive wording; tokens per answer on hover."
        )
    elif lex_kind == "whole_model":
        cap += (
            " Lexical panels are whole-model figures over all of a model's answers (this measurement has no per-prompt means: "
            "measure again); they fall as answers grow longer, so compare them with the tokens per answer on hover."
        )
    return Figure("diversity", "Within-model diversity and distinct answers", cap, fig, width=w, height=h)


LEXICAL_AXES = (
    "n-gram diversity, mean over prompts",
    "compression ratio, mean over prompts",
    "n-gram diversity, whole model",
    "compression ratio, whole model",
)


def _lexical_panels(lexical: pd.DataFrame) -> tuple[str | None, list]:
    """The lexical panels and which figures they show. Per-prompt means, where the measurement
    has them: a whole-model n-gram diversity or compression ratio is taken over all of a
    model's answers at once, and falls as the answers grow longer (more words, more repeats),
    so it ranks verbose models as repetitive. Averaged over prompts, each figure rests on one
    prompt's k answers and the models are compared at the length of one answer set."""
    per_prompt = (
        ("per_prompt_ngram_div_mean", "Lexical diversity (distinct n-grams, per prompt)", LEXICAL_AXES[0]),
        ("per_prompt_compression_ratio", "Compression ratio (per prompt; higher: more repetitive)", LEXICAL_AXES[1]),
    )
    whole = (
        ("ngram_div_mean", "Lexical diversity (distinct n-grams, whole model)", LEXICAL_AXES[2]),
        ("compression_ratio", "Compression ratio (whole model; higher: more repetitive)", LEXICAL_AXES[3]),
    )
    for kind, cols in (("per_prompt", per_prompt), ("whole_model", whole)):
        panels = [
            (title, axis, lexical[col], None, None, None)
            for col, title, axis in cols
            if col in lexical.columns and _finite(lexical[col]).any()
        ]
        if panels:
            return kind, panels
    return None, []


def separability(auc: pd.DataFrame | None, order: list[str], sep: dict | None) -> Figure | None:
    import plotly.graph_objects as go

    if auc is None or not len(auc) or not _finite(auc.to_numpy(dtype=float)).any():
        return None
    models = [m for m in order if m in auc.index]
    A = auc.reindex(index=models, columns=models).to_numpy(dtype=float)
    names = [label(m) for m in models]
    M = len(models)
    custom = np.dstack([np.array([[names[j] for j in range(M)] for _ in range(M)]), np.array([[names[i]] * M for i in range(M)])])
    fig = go.Figure(
        go.Heatmap(
            z=[[None if not np.isfinite(v) else float(v) for v in row] for row in A],
            x=list(range(M)),
            y=list(range(M)),
            customdata=custom.tolist(),
            zmin=0.5,
            zmax=1.0,
            colorscale=SEPARABILITY_SCALE,
            colorbar={"title": {"text": "AUC"}},
            hovertemplate="%{customdata[1]} vs %{customdata[0]}<br>AUC = %{z:.3f}<extra></extra>",
            hoverongaps=False,
        )
    )
    lm = label_margin(names)
    size = max(480, 22 * M + 70 + lm)
    fig.update_layout(
        **_base_layout(
            None,
            height=size,
            width=size + 110,
            margin={"l": lm, "r": 20, "t": 20, "b": lm},
            xaxis={"tickmode": "array", "tickvals": list(range(M)), "ticktext": names, "tickangle": -60, "showgrid": False},
            yaxis={
                "tickmode": "array",
                "tickvals": list(range(M)),
                "ticktext": names,
                "autorange": "reversed",
                "showgrid": False,
            },
        )
    )
    cap = "Pale cells (AUC near 0.5) are pairs a classifier cannot tell apart by style; dark cells are easy to tell apart."
    if sep and sep.get("value") is not None:
        ci = sep.get("ci") or [None, None]
        cap += (
            f" Telling all {M} apart: balanced accuracy {fmt(sep['value'])} [{fmt(ci[0])}, {fmt(ci[1])}] against chance {fmt(sep.get('chance'))}, "
            f"folds grouped by prompt."
        )
    return Figure("separability", "Pairwise separability", cap, fig, width=size + 110, height=size)


def voices_histogram(per_prompt: pd.DataFrame, voices: dict | None, n_models: int) -> Figure | None:
    import plotly.graph_objects as go

    if per_prompt is None or "voices" not in per_prompt.columns or not _finite(per_prompt["voices"]).any():
        return None
    v = per_prompt["voices"].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    fig = go.Figure(
        go.Histogram(
            x=v.tolist(),
            nbinsx=min(60, max(10, len(v) // 10)),
            marker={"color": "#2b8cbe"},
            hovertemplate="V(p) %{x}: %{y} prompts<extra></extra>",
        )
    )
    if voices and voices.get("value") is not None:
        fig.add_vline(
            x=voices["value"],
            line={"dash": "dash", "color": "#333"},
            annotation_text=f"mean {fmt(voices['value'], 2)}",
            annotation_position="top right",
        )
    fig.update_layout(
        **_base_layout(
            None,
            height=340,
            width=900,
            margin={"l": 60, "r": 30, "t": 30, "b": 50},
            bargap=0.05,
            xaxis={
                "title": {"text": f"voices per prompt V(p) among {n_models} models (1 = they all say one thing)"},
                "gridcolor": "#eee",
            },
            yaxis={"title": {"text": "prompts"}, "gridcolor": "#eee"},
        )
    )
    cap = (
        "How many distinct voices each prompt drew; prompts at the left end are where the models agree most, and the "
        "prompt explorer below opens on them."
    )
    return Figure("voices", "Voices per prompt", cap, fig, width=900, height=340)


def language_panels(
    per_prompt: pd.DataFrame, loo_per_prompt: pd.DataFrame | None, languages: dict[str, str], order: list[str]
) -> Figure | None:
    """Voices and homogeneity by the prompts' language, and each model's loss by language: a
    model can be a distinct voice in one language and a copy in another."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pp = per_prompt.copy()
    pp["language"] = [languages.get(str(p)) for p in pp.index]
    pp = pp[pp["language"].notna()]
    langs = sorted(pp["language"].unique())
    if len(langs) < 2:
        return None
    counts = pp["language"].value_counts()
    tick = {lg: f"{label(lg)} ({counts[lg]})" for lg in langs}
    has_loo = loo_per_prompt is not None and len(loo_per_prompt.columns)
    fig = make_subplots(
        rows=1,
        cols=3 if has_loo else 2,
        column_widths=[0.3, 0.3, 0.4] if has_loo else [0.5, 0.5],
        subplot_titles=["Voices per prompt", "Homogeneity per prompt"] + (["Loss without the model (L_m)"] if has_loo else []),
        horizontal_spacing=0.12 if has_loo else 0.08,
    )
    for col, metric, color in ((1, "voices", "#2b8cbe"), (2, "homogeneity", "#f28e2b")):
        for lg in langs:
            vals = pp.loc[pp["language"] == lg, metric].to_numpy(dtype=float)
            fig.add_trace(
                go.Box(
                    y=vals[np.isfinite(vals)].tolist(),
                    name=tick[lg],
                    marker={"color": color},
                    boxmean=True,
                    showlegend=False,
                    hovertemplate=f"{tick[lg]}: %{{y:.3f}}<extra>{metric}</extra>",
                ),
                row=1,
                col=col,
            )
    if has_loo and loo_per_prompt is not None:
        lp = loo_per_prompt.copy()
        lp["language"] = [languages.get(str(p)) for p in lp.index]
        means = lp.groupby("language").mean(numeric_only=True)
        models = [m for m in order if m in means.columns]
        z = means.reindex(index=langs, columns=models).to_numpy(dtype=float).T
        zmax = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        fig.add_trace(
            go.Heatmap(
                z=[[None if not np.isfinite(v) else float(v) for v in row] for row in z],
                x=[tick[lg] for lg in langs],
                y=[label(m) for m in models],
                colorscale="RdBu",
                zmid=0,
                zmin=-zmax,
                zmax=zmax,
                colorbar={"title": {"text": "L_m"}, "x": 1.02},
                hovertemplate="%{y} in %{x}: L = %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=3,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=3)
    h = max(420, 18 * (len(order) if has_loo else 0) + 160)
    fig.update_layout(**_base_layout(None, height=h, width=1100, margin={"l": 60, "r": 60, "t": 40, "b": 90}))
    for a in fig.layout.annotations:
        a.font = {"size": 11}
    cap = (
        "The same measures split by the language of the prompt (prompts per language in brackets): look for languages "
        "where the models agree more, and models whose own voice shows in one language only."
    )
    return Figure("languages", "By language", cap, fig, width=1100, height=h)
