"""The report's "Loops" section: what happens when models read their own outputs, drawn.

It shows :func:`monoculture.loops.summary.loop_summary` (the same dict ``monoculture loop
summary --json`` prints, so every figure on the page can be checked against the command): the
trajectory of each property per model and task (the mean over chains with its interval, one
panel per task), the attractor table (strength and position with their bootstrap intervals and
p, at the final step and at step 10), the paired differences between models, drift and
convergence curves, how much diversity the loop destroyed (Vendi of the final texts against
the seeds'), the motifs the chains end in (their words, each model's share and a few of the
texts), image chains' thumbnails inline, and the methods (which x the attractor regression
used, the scorers and their versions, what strength and position mean and what they do not).

The section appears only when the study has loop chains; without them it is absent rather than
empty. A failure while summarising leaves the section out with a note naming it, so the rest of
the report still appears and the failure is seen.

Everything from the chains is untrusted: model names, task names, seed and final texts, motif
words. They reach the page as text (autoescaped by the template, each in a ``<bdi>``) and, in
figures, through :func:`~monoculture.report.htmlsafe.plot_label`. Thumbnails are shown only when
their data is base64 of a PNG (checked here), as ``data:`` URIs, which the page's policy allows.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Iterable
from typing import Any

from monoculture.errors import UserError
from monoculture.report import figures as F

#: What each built-in property is, for axis titles (a user scorer is shown by its name).
PROPERTY_LABELS = {
    "length": "length (characters)",
    "positivity": "positivity (VADER compound)",
    "difficulty": "difficulty (Gunning fog)",
    "toxicity": "toxicity",
}
#: Representative texts shown per motif, and the characters kept of each.
REPRESENTATIVES = 3
TEXT_CHARS = 700
#: Thumbnails: at most this many chains, and this many images per chain.
THUMB_CHAINS = 8
THUMB_STEPS = 10
#: Lexical measures drawn per step (D's lexical_by_step columns), with what they are.
LEXICAL = {
    "ngram_div_mean": "n-gram diversity (distinct over all n-grams, mean over n)",
    "compression_ratio": "compression ratio (higher: more repetitive)",
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


# -- small helpers ---------------------------------------------------------------------------


def _ci_of(row: dict, key: str = "ci") -> tuple[float | None, float | None]:
    """A row's interval: ``ci: [lo, hi]`` as the summary writes it, or ``ci_low``/``ci_high``
    as D's frames name them."""
    ci = row.get(key)
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return F.num(ci[0]), F.num(ci[1])
    return F.num(row.get("ci_low")), F.num(row.get("ci_high"))


def _est(value: Any, ci: tuple[Any, Any] | None) -> dict:
    lo, hi = ci or (None, None)
    return {"value": F.fmt(value), "lo": F.fmt(lo), "hi": F.fmt(hi), "has_ci": F.num(lo) is not None}


def _p(p: Any) -> str:
    """A p-value for a table cell: "< 0.001" below that (t-test p-values can be tiny, never 0)."""
    x = F.num(p)
    if x is not None and x < 0.001:
        return "< 0.001"
    s = F.pvalue(p)
    return s[2:] if s.startswith("= ") else s


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "x"


def _rows(x: Any) -> list[dict]:
    return [r for r in x if isinstance(r, dict)] if isinstance(x, list) else []


def _order(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def _upper_first(s: Any) -> str:
    s = str(s)
    return s[:1].upper() + s[1:]


def _bounds(b: Any) -> str:
    """A property's range as text: [lo, hi], >= lo, <= hi, or none."""
    lo, hi = (F.num(b[0]), F.num(b[1])) if isinstance(b, (list, tuple)) and len(b) == 2 else (None, None)
    if lo is None and hi is None:
        return "unbounded"
    if hi is None:
        return f">= {lo:g}"
    if lo is None:
        return f"<= {hi:g}"
    return f"[{lo:g}, {hi:g}]"


def _short(text: Any, n: int = TEXT_CHARS) -> tuple[str, bool]:
    s = "" if text is None else str(text)
    return (s, False) if len(s) <= n else (s[:n].rstrip() + " …", True)


# -- figures ---------------------------------------------------------------------------------


def _panels(tasks: list[str]) -> tuple[int, int]:
    cols = min(3, max(1, len(tasks)))
    return math.ceil(len(tasks) / cols), cols


def curves_by_task(
    rows: list[dict],
    *,
    name: str,
    title: str,
    caption: str,
    y_title: str,
    value: str = "value",
    group: str = "label",
    baseline: str | None = None,
    baseline_name: str = "",
    labels: list[str] | None = None,
) -> F.Figure | None:
    """One panel per task, one line per model with its interval as a band (``baseline``: a
    second value of the same rows drawn dotted in the model's colour, e.g. the seeds' level)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = [r for r in rows if F.num(r.get(value)) is not None and r.get("step") is not None]
    if not rows:
        return None
    tasks = _order(r.get("task") for r in rows)
    groups = labels or _order(r.get(group) for r in rows)
    groups = [g for g in groups if any(r.get(group) == g for r in rows)]
    colour = {g: F.PALETTE[i % len(F.PALETTE)] for i, g in enumerate(groups)}
    n_rows, n_cols = _panels(tasks)
    fig = make_subplots(
        rows=n_rows,
        cols=n_cols,
        shared_yaxes=True,
        subplot_titles=[F.label(t) for t in tasks],
        horizontal_spacing=0.04,
        vertical_spacing=0.12 if n_rows > 1 else 0.08,
    )
    legend_done: set[str] = set()
    last = max(int(r["step"]) for r in rows)  # steps are whole numbers: ticks at whole steps
    for ti, task in enumerate(tasks):
        r_, c_ = ti // n_cols + 1, ti % n_cols + 1
        for g in groups:
            pts = sorted((r for r in rows if r.get("task") == task and r.get(group) == g), key=lambda r: int(r["step"]))
            if not pts:
                continue
            xs = [int(p["step"]) for p in pts]
            ys = [F.num(p.get(value)) for p in pts]
            ci = [_ci_of(p) for p in pts]
            lo = [c[0] for c in ci]
            hi = [c[1] for c in ci]
            col = colour[g]
            if any(v is not None for v in lo):
                for band in F.interval_band(xs, lo, hi, col, 0.16, legendgroup=str(g)):
                    fig.add_trace(band, row=r_, col=c_)
            hover = [
                F.label(f"{g} · {task} · step {x}: {F.fmt(y)}" + (f" [{F.fmt(a)}, {F.fmt(b)}]" if a is not None else ""))
                for x, y, a, b in zip(xs, ys, lo, hi)
            ]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    name=F.label(g),
                    legendgroup=str(g),
                    showlegend=g not in legend_done,
                    line={"color": col, "width": 2},
                    marker={"color": col, "size": 5},
                    hovertext=hover,
                    hoverinfo="text",
                ),
                row=r_,
                col=c_,
            )
            legend_done.add(g)
            if baseline:
                bys = [F.num(p.get(baseline)) for p in pts]
                if any(b is not None for b in bys):
                    fig.add_trace(
                        go.Scatter(
                            x=xs,
                            y=bys,
                            mode="lines",
                            name=F.label(f"{g}: {baseline_name}"),
                            legendgroup=str(g),
                            showlegend=False,
                            line={"color": col, "width": 1, "dash": "dot"},
                            hovertext=[F.label(f"{g} · {task} · step {x}: {baseline_name} {F.fmt(b)}") for x, b in zip(xs, bys)],
                            hoverinfo="text",
                        ),
                        row=r_,
                        col=c_,
                    )
    for i in range(1, n_rows * n_cols + 1):
        fig.layout[f"xaxis{'' if i == 1 else i}"].update(
            title={"text": "step"} if i > (n_rows - 1) * n_cols else {}, tick0=0, dtick=max(1, math.ceil(last / 10))
        )
    for rr in range(n_rows):
        fig.layout[f"yaxis{'' if rr * n_cols == 0 else rr * n_cols + 1}"].update(title={"text": y_title}, zeroline=False)
    fig.update_layout(
        **F._base_layout(legend={"orientation": "h", "y": -0.18 if n_rows == 1 else -0.1}, hovermode="closest"),
    )
    for a in fig.layout.annotations:  # the panel titles: task names, data
        a.font = {"size": 13}
    height = 360 * n_rows + 80
    return F.Figure(name=name, title=title, caption=caption, fig=fig, height=height)


def _motif_heatmap(motifs: list[dict], shares: list[dict], labels: list[str], name: str, what: str) -> F.Figure | None:
    import plotly.graph_objects as go

    if not motifs or not shares:
        return None
    ids = [str(m.get("motif")) for m in motifs]
    names = [F.label(f"{m.get('name') or m.get('motif')}") for m in motifs]
    labels = [g for g in labels if any(s.get("label") == g for s in shares)]
    if not labels:
        return None
    z, text = [], []
    for g in labels:
        row, trow = [], []
        for mid in ids:
            hit = [s for s in shares if s.get("label") == g and str(s.get("motif")) == mid]
            v = F.num(hit[0].get("share")) if hit else 0.0
            row.append(v)
            n = hit[0].get("chains") if hit else None
            trow.append(F.label(f"{g} · {mid}: {F.fmt(v, 2)}" + (f" ({n} chains)" if n is not None else "")))
        z.append(row)
        text.append(trow)
    heat = go.Heatmap(
        z=z,
        x=list(range(len(ids))),
        y=list(range(len(labels))),
        colorscale="Blues",
        zmin=0,
        zmax=1,
        colorbar={"title": {"text": "share"}},
        hovertext=text,
        hoverinfo="text",
    )
    lm = F.label_margin([F.label(g) for g in labels])
    layout = F._base_layout(
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(len(ids))),
            "ticktext": names,
            "tickangle": -30,
            "title": {"text": "motif"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(labels))),
            "ticktext": [F.label(g) for g in labels],
            "autorange": "reversed",
        },
        margin={"l": lm, "r": 30, "t": 20, "b": 120},
    )
    return F.Figure(
        name=name,
        title=f"Where each model's {what} end",
        caption=f"The share of each model's chains whose final {what[:-1] if what.endswith('s') else what} fall in each motif "
        "(a row sums to 1). Rows alike: different models pull toward the same motifs.",
        fig=go.Figure([heat], layout),
        height=max(300, 40 * len(labels) + 200),
    )


# -- tables and panels -----------------------------------------------------------------------


def attractor_rows(rows: list[dict], properties: list[str]) -> list[dict]:
    """One row per (model, task, property): the final step beside step 10."""
    by: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if r.get("step") is None:
            continue
        by.setdefault((r.get("property"), r.get("task"), r.get("model")), {})[int(r["step"])] = r
    order = {p: i for i, p in enumerate(properties)}

    def weak(r: dict) -> bool:
        """No fixed point to speak of: the strength is 0, or its interval reaches 0."""
        lo = _ci_of(r)[0]
        return (F.num(r.get("strength")) or 0.0) <= 0.0 or (lo is not None and lo <= 0.0)

    def cell(r: dict | None) -> dict | None:
        if r is None:
            return None
        return {
            "step": int(r["step"]),
            "strength": _est(r.get("strength"), _ci_of(r)),
            "position": _est(r.get("position"), _ci_of(r, "position_ci")),
            # a line with no fixed point to speak of: the strength's interval reaches 0
            "weak": weak(r),
            "slope": F.fmt(r.get("slope")),
            "p": _p(r.get("p")),
            "chains": r.get("chains"),
        }

    out = []
    for (prop, task, model), steps in by.items():
        final = steps[max(steps)]
        out.append(
            {
                "property": prop,
                "task": task,
                "model": model,
                "chains": final.get("chains"),
                "final": cell(final),
                "step10": cell(steps.get(10)),
            }
        )
    out.sort(key=lambda r: (order.get(r["property"], len(order)), str(r["property"]), str(r["task"]), str(r["model"])))
    return out


def motif_panels(motifs: dict | None, labels: list[str], images: dict[str, dict] | None = None) -> dict | None:
    """Each motif with its words, each model's share (as a bar) and a few of its texts (the
    captions, for image motifs, with the last images of the chains nearest its centre)."""
    if not isinstance(motifs, dict):
        return None
    mrows = _rows(motifs.get("motifs"))
    shares = _rows(motifs.get("shares"))
    if not mrows:
        return None
    panels = []
    for m in mrows:
        mid = m.get("motif")
        words = m.get("words")
        if isinstance(words, str):
            words = [w for w in re.split(r"[,\s]+", words) if w]
        mshares = []
        for g in labels:
            hit = [x for x in shares if x.get("label") == g and str(x.get("motif")) == str(mid)]
            if not hit:
                continue
            v = F.num(hit[0].get("share")) or 0.0
            mshares.append(
                {"label": g, "share": F.fmt(v, 2), "width": round(100 * max(0.0, min(1.0, v)), 1), "chains": hit[0].get("chains")}
            )
        reps = m.get("representatives")
        texts: list = reps if isinstance(reps, list) else []
        shown = []
        for t in texts[:REPRESENTATIVES]:
            if isinstance(t, dict):  # a row naming where it came from
                text, cut = _short(t.get("text"))
                shown.append({"text": text, "cut": cut, "label": t.get("label"), "task": t.get("task")})
            else:
                text, cut = _short(t)
                shown.append({"text": text, "cut": cut, "label": None, "task": None})
        pics = [images[c] for c in m.get("thumbnail_chains") or [] if images and c in images]
        panels.append(
            {
                "id": str(mid),
                "name": m.get("name") or f"motif {mid}",
                "words": [str(w) for w in (words or [])][:12],
                "size": m.get("size"),
                "shares": mshares,
                "texts": shown,
                "images": pics,
            }
        )
    ov = motifs.get("overlap") if isinstance(motifs.get("overlap"), dict) else None
    overlap = None
    if ov and F.num(ov.get("value")) is not None:
        null_ci = ov.get("null_ci") if isinstance(ov.get("null_ci"), list) else [None, None]
        overlap = {
            "value": F.fmt(ov.get("value")),
            "p": _p(ov.get("p")),
            "permutations": ov.get("permutations"),
            "null_mean": F.fmt(ov.get("null_mean")) if F.num(ov.get("null_mean")) is not None else None,
            "null_lo": F.fmt(null_ci[0] if null_ci else None),
            "null_hi": F.fmt(null_ci[1] if len(null_ci) > 1 else None),
        }
    note = ov.get("note") if ov and ov.get("note") else None
    return {"panels": panels, "overlap": overlap, "k": len(panels), "method": str(motifs.get("method") or ""), "note": note}


def _png(b64: Any) -> str | None:
    """A ``data:`` URI when ``b64`` is base64 of a PNG, else None: the string goes into an
    attribute and must be only that."""
    if not isinstance(b64, str) or not _BASE64.match(b64):
        return None
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return "data:image/png;base64," + b64 if head.startswith(PNG_SIGNATURE) else None


def thumbnails(rows: list[dict], notes: list[str]) -> tuple[list[dict], dict[str, dict]]:
    """Chains of images as rows of thumbnails (``data:`` URIs; anything that is not base64 of
    a PNG is left out with a note), and each chain's last image (for the motif panels)."""
    chains: dict[str, dict] = {}
    bad = 0
    for r in rows:
        src = _png(r.get("png_base64"))
        if src is None:
            bad += 1
            continue
        c = chains.setdefault(
            str(r.get("chain_id")), {"label": r.get("label"), "task": r.get("task"), "seed": r.get("seed_id"), "images": {}}
        )
        caption, _ = _short(r.get("caption"), 240)
        c["images"][int(r.get("step") or 0)] = {
            "step": int(r.get("step") or 0),
            "src": src,
            "caption": caption,
            "label": r.get("label"),
        }
    if bad:
        notes.append(f"{bad} image thumbnail(s) left out: not PNG data")
    last = {cid: c["images"][max(c["images"])] for cid, c in chains.items()}
    out = []
    for cid, c in chains.items():
        imgs = [c["images"][k] for k in sorted(c["images"])]
        if len(imgs) > THUMB_STEPS:  # evenly spaced, first and last kept
            idx = sorted({round(i * (len(imgs) - 1) / (THUMB_STEPS - 1)) for i in range(THUMB_STEPS)})
            imgs = [imgs[i] for i in idx]
        out.append({"chain": cid[:10], "label": c["label"], "task": c["task"], "seed": c["seed"], "images": imgs})
    if len(out) > THUMB_CHAINS:
        notes.append(f"thumbnails of {THUMB_CHAINS} of {len(out)} image chains shown")
    return out[:THUMB_CHAINS], last


def diversity_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "label": r.get("label"),
            "task": r.get("task"),
            "vendi_seeds": F.fmt(r.get("vendi_seeds")),
            "vendi_final": F.fmt(r.get("vendi_final")),
            "ratio": _est(r.get("ratio"), _ci_of(r)),
        }
        for r in rows
    ]


# -- the section -----------------------------------------------------------------------------


def section_from_summary(summary: dict) -> tuple[dict | None, list[F.Figure]]:
    """(the template's data, the figures) from a :func:`loop_summary` dict; (None, []) when it
    holds no chains, text or image."""
    if not isinstance(summary, dict):
        return None, []
    image_chains = int(summary["images"].get("chains") or 0) if isinstance(summary.get("images"), dict) else 0
    if not int(summary.get("chains") or 0) and not image_chains:
        return None, []
    notes = [str(n) for n in summary.get("notes") or []]
    scorers = _rows(summary.get("scorers"))
    trajectories = _rows(summary.get("trajectories"))
    attractors = _rows(summary.get("attractors"))
    properties = _order([s.get("name") for s in scorers] + [r.get("property") for r in attractors + trajectories])
    chain_rows = _rows(summary.get("labels"))
    labels = _order([r.get("label") for r in chain_rows] + [r.get("model") for r in attractors + trajectories])
    x_from = summary.get("x_from") or "seed"
    x_text = "the seed text" if x_from == "seed" else "the first generation (step 1), as Perez et al.'s published length figures"
    figs: list[F.Figure] = []
    slugs = [_slug(q) for q in properties]
    for i, (prop, slug) in enumerate(zip(properties, slugs, strict=True)):
        f = curves_by_task(
            [r for r in trajectories if r.get("property") == prop],
            # "a:b" and "a_b" would share a slug: the property's place keeps ids (and export files) apart
            name=f"loops_trajectory_{slug}" + ("" if slugs.count(slug) == 1 else f"_{i}"),
            title=f"{_upper_first(PROPERTY_LABELS.get(prop, prop))} along the chains",
            caption=f"The mean {prop} of the texts at each step over a model's chains, with its bootstrap interval over "
            "seeds, each with all its chains (band); one panel per task. Lines that meet from different starts: an attractor.",
            y_title=str(PROPERTY_LABELS.get(prop, prop)),
            value="mean",
            group="model",
            labels=labels,
        )
        if f is not None:
            figs.append(f)
    for f in (
        curves_by_task(
            _rows(summary.get("drift")),
            name="loops_drift",
            title="Drift: similarity of each step to its seed",
            caption="Mean cosine similarity of the text at each step to the chain's own seed, over chains, with its "
            "bootstrap interval. Falling: the chain forgets where it started.",
            y_title="similarity to the seed",
            labels=labels,
        ),
        curves_by_task(
            _rows(summary.get("convergence")),
            name="loops_convergence",
            title="Convergence: do chains from different seeds end alike?",
            caption="Mean similarity between the texts at each step of chains that started from different seeds (solid, "
            "with its interval), against the same between their seeds (dotted). Above the dotted line: unrelated "
            "starts are being pulled to the same place.",
            y_title="similarity across seeds",
            baseline="seeds_value",
            baseline_name="seeds",
            labels=labels,
        ),
    ):
        if f is not None:
            figs.append(f)
    lexical = _rows(summary.get("lexical"))
    for metric, what in LEXICAL.items():
        f = curves_by_task(
            lexical,
            name=f"loops_lexical_{_slug(metric)}",
            title=f"Lexical diversity along the chains: {metric}",
            caption=f"{what[0].upper() + what[1:]} of the texts at each step, pooled over a model's chains, per task.",
            y_title=metric,
            value=str(metric),
            labels=labels,
        )
        if f is not None:
            figs.append(f)
    motifs = motif_panels(summary.get("motifs"), labels)
    if motifs:
        f = _motif_heatmap(
            _rows(summary["motifs"].get("motifs")), _rows(summary["motifs"].get("shares")), labels, "loops_motifs", "texts"
        )
        if f is not None:
            figs.append(f)
    images = _images(summary.get("images"), labels, figs, notes)
    diversity = diversity_rows(_rows(summary.get("diversity")))
    paired = [
        {
            "task": r.get("task"),
            "property": r.get("property"),
            "model_a": r.get("model_a"),
            "model_b": r.get("model_b"),
            "difference": _est(r.get("difference"), _ci_of(r)),
            "p": _p(r.get("p")),
        }
        for r in _rows(summary.get("paired"))
    ]
    attractor_table = attractor_rows(attractors, properties)
    data = {
        "chains": int(summary.get("chains") or 0),
        "total_chains": int(summary.get("chains") or 0) + image_chains,
        "labels": [
            {
                "label": r.get("label"),
                "task": r.get("task"),
                "chains": r.get("chains"),
                "steps": f"{r.get('steps_min')}"
                if r.get("steps_min") == r.get("steps_max")
                else f"{r.get('steps_min')}-{r.get('steps_max')}",
            }
            for r in chain_rows
        ],
        "models": len({r.get("label") for r in chain_rows}),
        "tasks": _order(r.get("task") for r in chain_rows),
        "x_from": x_from,
        "x_text": x_text,
        "scorers": [
            {
                "name": s.get("name"),
                "bounds": _bounds(s.get("bounds")),
                "version": s.get("version") or "",
                "note": s.get("note") or "",
            }
            for s in scorers
        ],
        # the VADER caveat, unless the scorer's own note (among the summary's) already says it
        "vader": "positivity" in properties and not any("vader" in n.lower() for n in notes),
        "attractors": attractor_table,
        "paired": paired,
        "diversity": diversity,
        "motifs": motifs,
        "images": images,
        # figures shown in their own subsections; the rest follow the attractor tables
        "motif_figures": [f.name for f in figs if f.name == "loops_motifs"],
        "image_figures": [
            f.name for f in figs if f.name.startswith(("loops_image_", "loops_caption_")) and f.name != "loops_image_motifs"
        ],
        "image_motif_figures": [f.name for f in figs if f.name == "loops_image_motifs"],
        "final_steps": sorted({r["final"]["step"] for r in attractor_table if r["final"]}),
        "methods": str(summary.get("methods") or ""),
        "notes": notes,
    }
    return data, figs


def _images(images: Any, labels: list[str], figs: list[F.Figure], notes: list[str]) -> dict | None:
    """The image chains (E's image_summary): curves like the text ones on image embeddings,
    the captions' curves, thumbnails by chain, motifs with their images, diversity."""
    if not isinstance(images, dict):
        return None
    chain_rows = _rows(images.get("labels"))
    img_labels = (
        _order(
            [r.get("label") for r in chain_rows]
            + [r.get("label") for k in ("drift", "convergence") for r in _rows(images.get(k))]
            + [r.get("label") for r in _rows(images.get("thumbnails"))]
        )
        or labels
    )
    captions_ = images.get("captions")
    captions: dict = captions_ if isinstance(captions_, dict) else {}
    for rows, name, title, y_title, base, caption in (
        (
            images.get("drift"),
            "loops_image_drift",
            "Image drift: similarity of each round's image to the first",
            "similarity to the first image",
            None,
            "Mean cosine similarity (image embeddings) of each round's image to the chain's first image, with its "
            "bootstrap interval over seeds (each with all its chains).",
        ),
        (
            images.get("convergence"),
            "loops_image_convergence",
            "Image convergence: do chains from different prompts end alike?",
            "similarity across seeds",
            "seeds_value",
            "Mean similarity between the images of chains that started from different prompts (solid, with its "
            "interval), against the same between their first images (dotted).",
        ),
        (
            images.get("prompt_match"),
            "loops_image_prompt_match",
            "Images against the prompt they started from",
            "image-prompt similarity",
            None,
            "Mean CLIP similarity of each round's image to the text of the chain's starting prompt: falling, the "
            "images leave the prompt behind.",
        ),
        (
            captions.get("drift"),
            "loops_caption_drift",
            "Caption drift: similarity of each round's caption to the prompt",
            "similarity to the prompt",
            None,
            "The captions measured as a text chain: mean similarity of each caption to the starting prompt.",
        ),
    ):
        f = curves_by_task(
            _rows(rows),
            name=name,
            title=title,
            caption=caption,
            y_title=y_title,
            baseline=base,
            baseline_name="start",
            labels=img_labels,
        )
        if f is not None:
            figs.append(f)
    thumbs, last = thumbnails(_rows(images.get("thumbnails")), notes)
    motifs = images.get("motifs")
    panels = motif_panels(motifs, img_labels, last) if isinstance(motifs, dict) else None
    if panels and isinstance(motifs, dict):
        f = _motif_heatmap(_rows(motifs.get("motifs")), _rows(motifs.get("shares")), img_labels, "loops_image_motifs", "images")
        if f is not None:
            figs.append(f)
    diversity = diversity_rows(_rows(images.get("diversity")))
    caption_diversity = diversity_rows(_rows(captions.get("diversity")))
    if not (thumbs or panels or diversity or any(f.name.startswith(("loops_image", "loops_caption")) for f in figs)):
        return None
    return {
        "chains": images.get("chains") or len(thumbs),
        "labels": [
            {
                "label": r.get("label"),
                "chains": r.get("chains"),
                "rounds": f"{r.get('rounds_min')}"
                if r.get("rounds_min") == r.get("rounds_max")
                else f"{r.get('rounds_min')}-{r.get('rounds_max')}",
            }
            for r in chain_rows
        ],
        "embedder": images.get("embedder"),
        "thumbnails": thumbs,
        "motifs": panels,
        "diversity": diversity,
        "caption_diversity": caption_diversity,
        "methods": str(images.get("methods") or ""),
        "notes": [str(n) for n in images.get("notes") or []],
    }


def has_chains(store, study: str | None) -> bool:
    """Whether the store holds loop chains (of ``study`` when given). A store from before the
    loop tables existed has none."""
    try:
        if study is None:
            row = store.con.execute("SELECT count(*) FROM loop_chains").fetchone()
        else:
            row = store.con.execute("SELECT count(*) FROM study_loop_chains WHERE study = ?", [study]).fetchone()
    except Exception:  # noqa: BLE001 - no loop tables in this store
        return False
    return bool(row and row[0])


def loops_only(store, study: str | None) -> bool:
    """A store (or study) with loop chains and no measurement is reported by its loops alone
    (the report and a study's report phase both ask this)."""
    from monoculture.results import list_runs

    return list_runs(store, study).empty and has_chains(store, study)


def loops_section(
    store,
    study: str | None,
    notes: list[str],
    settings: dict[str, Any] | None = None,
    pending: list | None = None,
    **options: Any,
) -> tuple[dict | None, list[F.Figure]]:
    """(the section's data, its figures), or (None, []) when the study has no loop chains. Any
    other failure leaves the section out with a note naming it.

    ``settings`` (a study's ``loops: summary:``; None: the defaults) and ``options`` are the
    summary's settings. A summary the store holds for them and for the chains as they are now
    (``monoculture loop summary`` and a study's loops phase store it) is drawn as it is, without
    scoring or embedding a text; otherwise it is computed and kept where the store is writable,
    or added to ``pending`` (for :func:`monoculture.loops.summary.keep_summaries`) where it is not."""
    if not has_chains(store, study):
        return None, []
    try:
        from monoculture.loops.summary import stored_loop_summary

        summary, _ = stored_loop_summary(store, study, pending=pending, **{**(settings or {}), **options})
        data, figs = section_from_summary(summary)
    except UserError as e:
        notes.append(f"loops section left out: {e}")
        return None, []
    except Exception as e:  # noqa: BLE001 - one failing section must not cost the whole report
        notes.append(f"loops section left out: {type(e).__name__}: {e}")
        return None, []
    return data, figs
