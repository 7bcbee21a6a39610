"""Plotly figures for the ecosystem report, built from analysis tables.

Every string that reaches a figure comes from Hub metadata that anyone can write, and plotly
renders a subset of HTML in labels (``<b>``, ``<br>``, even ``<a href>``). So every label passes
through :func:`label`, which escapes markup characters (plotly shows the entity as the literal
character) and defuses a leading ``$`` that would switch plotly to LaTeX, which would try to load
MathJax.

Figures are plain ``{"data": [...], "layout": {...}}`` dicts, not ``plotly.graph_objects``:
the report only needs plotly.js to draw them, and building validated figure objects cost more
time than all the analyses together.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from monoculture.ecosystem.cadence import History
from monoculture.ecosystem.lineage import Lineage
from monoculture.ecosystem.openness import LEVELS, level_name
from monoculture.report.htmlsafe import plot_label, script_json

LEVEL_COLOURS = {
    "permissive": "#1a9850",
    "restricted": "#91cf60",
    "non-commercial": "#e6c229",
    "gated": "#fc8d59",
    "api-only": "#d73027",
    "unknown": "#9e9e9e",
}
LAYOUT = dict(
    margin=dict(l=10, r=10, t=40, b=10),
    font=dict(family="system-ui, sans-serif", size=12),
    paper_bgcolor="#fff",
    plot_bgcolor="#fff",
    xaxis=dict(gridcolor="#eceef1", automargin=True),
    yaxis=dict(gridcolor="#eceef1", automargin=True),
)

Figure = dict


def figure(data: list[dict], **layout: Any) -> Figure:
    lay = json.loads(json.dumps(LAYOUT))
    for k, v in layout.items():
        if isinstance(v, dict) and isinstance(lay.get(k), dict):
            lay[k].update(v)
        else:
            lay[k] = v
    return {"data": data, "layout": lay}


def _list(values) -> list:
    """Plain JSON values: NaN becomes null, numpy scalars become Python numbers."""
    out = []
    for v in values:
        if isinstance(v, (np.floating, float)):
            out.append(None if math.isnan(float(v)) else float(v))
        elif isinstance(v, np.integer):
            out.append(int(v))
        else:
            out.append(v)
    return out


def label(text) -> str:
    """A Hub string as a plotly label: escaped, ``$`` defused, direction isolated (see htmlsafe)."""
    return plot_label(text)


def timeline(histories: list[History]) -> Figure:
    data = []
    order = [h.name for h in histories]
    for lv in (*LEVELS, "unknown"):
        for flagship in (True, False):
            pts = [(r, h) for h in histories for r in h.releases if level_name(r.level) == lv and r.flagship == flagship]
            if not pts:
                continue
            data.append(
                dict(
                    type="scatter",
                    x=[str(r.date) for r, _ in pts],
                    y=[label(h.name) for _, h in pts],
                    mode="markers",
                    name=f"{lv}{' (registry flagship)' if flagship else ''}",
                    legendgroup=lv,
                    marker=dict(
                        color=LEVEL_COLOURS[lv],
                        size=13 if flagship else 7,
                        symbol="star" if flagship else "circle",
                        line=dict(width=0.5, color="#333"),
                    ),
                    hovertext=[f"{label(r.name)}<br>{lv}<br>{label(r.licence or '')}<br>{label(r.source)}" for r, _ in pts],
                    hoverinfo="text+x",
                )
            )
    return figure(
        data,
        height=max(320, 28 * len(order) + 120),
        title=dict(text="Releases by family and openness level"),
        yaxis=dict(categoryorder="array", categoryarray=[label(n) for n in order][::-1]),
        legend=dict(orientation="h", y=-0.12),
    )


def family_shares(fa: pd.DataFrame) -> Figure:
    d = fa.sort_values("downloads_30d", ascending=True, na_position="first")
    names = [label(n) for n in d["name"]]
    data = [
        dict(type="bar", y=names, x=_list(d["share_downloads_30d"]), orientation="h", name="share of 30-day downloads"),
        dict(
            type="bar",
            y=names,
            x=_list(d["share_derivatives_transitive"]),
            orientation="h",
            name="share of derivatives (transitive)",
        ),
    ]
    return figure(
        data,
        barmode="group",
        height=max(320, 34 * len(d) + 100),
        title=dict(text="Adoption shares by family (current view)"),
        xaxis=dict(tickformat=".0%"),
        legend=dict(orientation="h", y=-0.12),
    )


def country_shares(cs: pd.DataFrame) -> Figure:
    names = [label(c if isinstance(c, str) else "Unknown") for c in cs["country"]]
    data = [
        dict(type="bar", x=names, y=_list(cs["share_downloads_30d"]), name="share of 30-day downloads"),
        dict(type="bar", x=names, y=_list(cs["share_derivatives_transitive"]), name="share of derivatives (transitive)"),
    ]
    return figure(
        data, barmode="group", height=360, title=dict(text="Adoption shares by country of origin"), yaxis=dict(tickformat=".0%")
    )


def shares_over_time(sot: pd.DataFrame) -> Figure | None:
    if sot.empty:
        return None
    kinds = sot.groupby("kind")["taken_at"].nunique()
    kinds = kinds[kinds >= 2]
    if kinds.empty:
        return None
    d = sot[sot["kind"] == kinds.idxmax()]
    data = [
        dict(
            type="scatter",
            x=[str(t) for t in g["taken_at"]],
            y=_list(g["share_downloads_30d"]),
            mode="lines+markers",
            name=label(fam),
        )
        for fam, g in d.groupby("family")
    ]
    return figure(
        data,
        height=360,
        title=dict(text=f"Share of 30-day downloads across snapshots ({label(kinds.idxmax())})"),
        yaxis=dict(tickformat=".0%"),
    )


def origin_by_month(osm: pd.DataFrame, by: str = "country") -> Figure | None:
    if osm.empty:
        return None
    data = [
        dict(
            type="bar",
            x=list(g["month"]),
            y=_list(g["share"]),
            name=label(key),
            customdata=_list(g["derivatives"]),
            hovertemplate="%{x}: %{y:.0%} (%{customdata:.1f} derivatives)<extra>" + label(key) + "</extra>",
        )
        for key, g in osm.groupby(by)
    ]
    return figure(
        data,
        barmode="stack",
        height=360,
        title=dict(text="New derivatives each month by origin of their base family"),
        xaxis=dict(type="category"),
        yaxis=dict(tickformat=".0%"),
    )


def spanning_tree(lineage: Lineage, roots: list[str], own: set[str]) -> dict[str, str]:
    """Child -> the parent through which BFS first reached it (a tree even when the graph is not)."""
    parent: dict[str, str] = {}
    seen = set(roots)
    frontier = list(roots)
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(lineage.children.get(node, {})):
                if child not in seen and child not in own:
                    seen.add(child)
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    return parent


def derivative_tree(
    name: str, lineage: Lineage, own: list[str], *, max_children: int = 8, max_depth: int = 3, max_roots: int = 8
) -> tuple[Figure | None, list[dict]]:
    """A treemap of the top of a family's derivative tree, plus the rows it shows."""
    own_set = set(own)
    parent = spanning_tree(lineage, own, own_set)
    kids: dict[str, list[str]] = {}
    for c, p in parent.items():
        kids.setdefault(p, []).append(c)
    size: dict[str, int] = {}

    def subtree(n: str) -> int:  # iterative post-order to avoid recursion limits
        stack, order = [n], []
        while stack:
            x = stack.pop()
            order.append(x)
            stack.extend(kids.get(x, []))
        for x in reversed(order):
            size[x] = 1 + sum(size[k] for k in kids.get(x, []))
        return size[n]

    roots = [r for r in own if kids.get(r)]
    for r in roots:
        subtree(r)
    roots = sorted(roots, key=lambda r: (-size[r], r))[:max_roots]
    if not roots:
        return None, []
    ids, labels, parents, rows = ["__root__"], [label(name)], [""], []
    shown_kids: dict[str, list[str]] = {}
    for r in roots:
        ids.append(r)
        labels.append(label(r))
        parents.append("__root__")
        frontier = [(r, 0)]
        while frontier:
            node, depth = frontier.pop(0)
            if depth >= max_depth:
                continue
            top = sorted(kids.get(node, []), key=lambda c: (-size[c], c))[:max_children]
            shown_kids[node] = top
            for c in top:
                ids.append(c)
                labels.append(label(c))
                parents.append(node)
                rows.append(
                    {
                        "model": c,
                        "base": node,
                        "relation": lineage.parents.get(c, {}).get(node, ""),
                        "depth": depth + 1,
                        "descendants": size[c] - 1,
                    }
                )
                frontier.append((c, depth + 1))
    # "remainder": a box's own value is the model itself plus its descendants that are not shown
    values = [0]
    for node in ids[1:]:
        own_part = 0 if node in own_set else 1
        values.append(own_part + (size[node] - 1) - sum(size[c] for c in shown_kids.get(node, [])))
    data = [
        dict(
            type="treemap",
            ids=ids,
            labels=labels,
            parents=parents,
            values=values,
            branchvalues="remainder",
            hovertemplate="%{label}<extra></extra>",
            maxdepth=3,
        )
    ]
    return figure(data, height=420, title=dict(text=f"Top of the {label(name)} derivative tree")), rows


def to_json(fig: Figure) -> str:
    """Figure JSON that is safe inside a <script> element (see monoculture.report.htmlsafe)."""
    return script_json(fig, default=str)
