"""Build the report: one self-contained HTML file from a store's latest (or a labelled)
measurement.

The page must open offline in any browser and years later, so plotly.js, styles and data are
inline and the page's Content-Security-Policy forbids every network fetch. Model outputs are
untrusted text: they reach the page only as JSON inside ``<script type="application/json">``
(with ``<``, ``>`` and ``&`` escaped) and are put into the document with ``textContent``; every
other string goes through jinja2's autoescape.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monoculture.errors import UserError
from monoculture.metrics.responses import blank_texts, prompt_labels
from monoculture.report import figures as F
from monoculture.report.explorer import build_explorer, load_vectors, unit_rows
from monoculture.report.htmlsafe import content_security_policy, inline_script, install_filters, script_json
from monoculture.report.loops import loops_only, loops_section

TEMPLATES = Path(__file__).parent / "templates"

SKIP_REASONS = {
    "empty texts": "empty answers (nothing to embed)",
    "empty_text": "empty answers",
    "NaN or zero vectors from the embedder": "the embedder returned no usable vector",
    "nonfinite_embedding": "non-finite embeddings",
    "zero_embedding": "zero-length embeddings",
    "vectors equal to the calibration mean": "answers whose embedding equals the calibration mean (nothing left after centring)",
    "equal_to_calibration_mean": "answers whose embedding equals the calibration mean (nothing left after centring)",
    "invalid_code": "rows with an unknown model or prompt",
    "models_without_responses": "models with no usable answer",
    "prompts_without_responses": "prompts with no usable answer",
    "prompts_single_model": "prompts answered by one model only (nothing to compare)",
    "models_without_repeats": "models with one answer per prompt (k = 1): within-model similarity and own range undefined",
    "group_models_unknown": "models named in groups but absent from the measurement",
}


@dataclass
class ReportInfo:
    """What was written, for the CLI's one-line summary and for tests."""

    path: Path
    bytes: int
    figures: list[str]
    explorer_prompts: int
    total_prompts: int
    label: str
    exported: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loop_chains: int = 0  # text and image chains in the Loops section (0: no section)


def _est(d: dict | None) -> dict | None:
    """A summary estimate as the template shows it: value, interval, prompts, few-prompt flag."""
    if not isinstance(d, dict) or F.num(d.get("value")) is None:
        return None
    ci = d.get("ci") or [None, None]
    prompts = d.get("prompts")
    return {
        "value": F.fmt(d["value"]),
        "lo": F.fmt(ci[0]),
        "hi": F.fmt(ci[1]),
        "prompts": int(prompts) if prompts is not None else None,
        "few": bool(d.get("few_prompts")) or (prompts is not None and prompts < 10),
    }


def _label_of(store, label: str | None) -> tuple[Any, float | None, np.ndarray | None]:
    rows = store.con.execute(
        "SELECT label, created_at, mu FROM measure_runs"
        + (" WHERE label = ?" if label else "")
        + " ORDER BY created_at DESC LIMIT 1",
        [label] if label else [],
    ).fetchall()
    if not rows:
        return label, None, None
    row = rows[0]
    return row[0], row[1], (np.asarray(row[2], dtype=np.float32) if row[2] is not None else None)


def _latest_label_of_study(store, study: str) -> str | None:
    """A study file names its study: report that study's latest measurement, not the store's."""
    from monoculture.results import resolve_label

    return resolve_label(store, study=study)


def _frame(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame | None:
    df = tables.get(name)
    if df is None:
        return None
    df = df.copy()
    df.index = df.index.map(str)  # read_json turns ids such as "12" into numbers
    return df


def headline(summary: dict, per_model: pd.DataFrame | None, groups: pd.DataFrame | None) -> dict:
    floor = summary.get("off_prompt_floor") or {}
    hom = _est(summary.get("homogeneity"))
    out: dict[str, Any] = {
        "voices": _est(summary.get("voices")),
        "homogeneity": hom,
        "floor": {"value": F.fmt(floor.get("value")), "sd": F.fmt(floor.get("sd")), "pairs": floor.get("pairs")}
        if isinstance(floor, dict) and F.num(floor.get("value")) is not None
        else None,
        "n_models": len(summary.get("models") or []),
        "models": [],
        "groups": [],
        "reference": None,
        "what_if": [],
        "single_sample": bool(
            per_model is not None and "mean_k" in per_model.columns and np.nanmax(per_model["mean_k"].astype(float)) <= 1
        ),
    }
    if per_model is not None and "loo" in per_model.columns:
        pm = per_model[np.isfinite(per_model["loo"].astype(float))].sort_values("loo", ascending=False)
        for m, r in pm.head(3).iterrows():
            out["models"].append(
                {
                    "name": m,
                    "value": F.fmt(r["loo"]),
                    "lo": F.fmt(r.get("loo_lo")),
                    "hi": F.fmt(r.get("loo_hi")),
                    "prompts": int(r.get("loo_prompts", 0) or 0),
                    "few": (r.get("loo_prompts", 0) or 0) < 10,
                }
            )
    n_boot = (summary.get("settings") or {}).get("n_boot")
    if groups is not None and len(groups) and "excess" in groups.columns:
        # Largest loss beyond as many random models: raw L_G grows with group size, so ranking
        # by it would always put the biggest group first.
        g = groups[np.isfinite(groups["excess"].astype(float)) & (groups["size"] > 1)]
        g = g.drop_duplicates(subset=["loss", "baseline", "size"])  # organisation == family often
        for _, r in g.sort_values("excess", ascending=False).head(3).iterrows():
            out["groups"].append(
                {
                    "attribute": r["attribute"],
                    "name": r["group"],
                    "size": int(r["size"]),
                    "value": F.fmt(r["loss"]),
                    "lo": F.fmt(r["loss_lo"]),
                    "hi": F.fmt(r["loss_hi"]),
                    "prompts": int(r["loss_prompts"] or 0),
                    "baseline": F.fmt(r["baseline"]),
                    "p": F.pvalue(r.get("excess_p"), n_boot),
                    "few": (r["loss_prompts"] or 0) < 10,
                }
            )
    ref = summary.get("reference")
    if isinstance(ref, dict):
        ratio = r if isinstance(r := ref.get("ratio"), dict) else {}
        out["reference"] = {
            "name": ref.get("name"),
            "ratio": _est(ratio),
            "models": _est(ref.get("homogeneity_models")),
            "reference": _est(ref.get("homogeneity_reference")),
            "difference": _est(ref.get("difference")),
            "floor": _est(ref.get("floor")),
            "definition": ref.get("ratio_definition"),
            "withheld": ratio.get("reason") if ratio.get("unstable") else None,
        }
    for name, w in (summary.get("what_if_removed") or {}).items():
        e = _est(w)
        if e:
            out["what_if"].append(
                {
                    "name": name,
                    "kind": w.get("kind"),
                    "members": w.get("members") or [],
                    **e,
                    "baseline": F.fmt(w.get("baseline")),
                }
            )
    return out


def _skipped(summary: dict) -> list[dict]:
    out = []
    for k, v in (summary.get("skipped") or {}).items():
        if isinstance(v, (list, tuple)):
            if v:
                out.append(
                    {
                        "what": SKIP_REASONS.get(k, k.replace("_", " ")),
                        "count": len(v),
                        "detail": ", ".join(map(str, v[:12])) + (" …" if len(v) > 12 else ""),
                    }
                )
        elif isinstance(v, (int, float)) and v:
            out.append({"what": SKIP_REASONS.get(k, k.replace("_", " ")), "count": int(v), "detail": ""})
    return out


def _studies(store, study: str | None) -> list[dict]:
    rows = store.con.execute("SELECT name, path, spec FROM studies ORDER BY created_at").fetchall()
    out = []
    for name, path, spec in rows:
        if study and name != study:
            continue
        try:
            spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
        except json.JSONDecodeError:
            spec = {}
        sampling = spec.get("sampling") or {}
        out.append(
            {
                "name": name,
                "path": path or "",
                "samples": spec.get("samples"),
                "sampling": [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in sampling.items()],
                "suites": [
                    f"{s.get('name')}"
                    + (f" (first {s['limit']})" if s.get("limit") else "")
                    + (f" [{', '.join(s['languages'])}]" if s.get("languages") else "")
                    for s in spec.get("suites") or []
                    if isinstance(s, dict)
                ],
                "overrides": [
                    (m.get("name"), json.dumps(m.get("sampling")))
                    for m in spec.get("models") or []
                    if isinstance(m, dict) and m.get("sampling")
                ],
            }
        )
    return out


def _methods(store, measured, gen: pd.DataFrame, attrs: dict, per_model: pd.DataFrame | None, created_at, study) -> dict:
    from monoculture import __version__

    s, st = measured.summary, measured.settings or {}
    models_df = store.models()
    used = list(measured.summary.get("models") or [])
    keys = [a for a in F.ATTRIBUTE_ORDER + ("base_model",) if any(a in attrs.get(m, {}) for m in used)]
    keys += sorted({k for m in used for k in attrs.get(m, {})} - set(keys))
    mrows = []
    info = models_df.set_index("name").to_dict("index") if len(models_df) else {}
    for m in used:
        r = info.get(m, {})
        pm = per_model.loc[m] if per_model is not None and m in per_model.index else None
        mrows.append(
            {
                "name": m,
                "backend": r.get("backend") or "",
                "model_id": r.get("model_id") or "",
                "revision": r.get("revision") or "",
                "source": r.get("source") or "",
                "attrs": ["" if attrs.get(m, {}).get(a) is None else str(attrs.get(m, {}).get(a)) for a in keys],
                "responses": int(pm["responses"]) if pm is not None and "responses" in pm else "",
                "prompts": int(pm["prompts"]) if pm is not None and "prompts" in pm else "",
                "k": F.fmt(pm["mean_k"], 2) if pm is not None and "mean_k" in pm else "",
            }
        )
    suites = []
    if len(gen):
        g = gen.drop_duplicates("prompt_key")
        for suite, sub in g.groupby(g["suite"].fillna("(none)")):
            langs = sorted({x for x in sub["language"].dropna().unique()})
            cats = sub["category"].dropna().nunique()
            suites.append(
                {"name": suite, "prompts": len(sub), "languages": ", ".join(langs) or "not recorded", "categories": int(cats)}
            )
    sources = sorted({x for x in gen["source"].dropna().unique()}) if "source" in gen.columns and len(gen) else []
    ms = s.get("settings") if isinstance(s.get("settings"), dict) else {}
    # measure() keeps its own settings in the summary; the pipeline's (random draws,
    # permutations, floor pairs) survive in the tables and the floor's record.
    tables = measured.tables
    g, lin = tables.get("groups"), tables.get("lineage")
    floor = s.get("off_prompt_floor") if isinstance(s.get("off_prompt_floor"), dict) else {}
    draws = ms.get("n_random")
    if draws is None and g is not None and len(g) and "baseline_draws" in g.columns:
        draws = int(g["baseline_draws"].max())
    perms = ms.get("n_perm")
    if perms is None and lin is not None and len(lin) and "permutations" in lin.columns:
        perms = int(lin["permutations"].max())
    sep = s.get("separability") if isinstance(s.get("separability"), dict) else None
    return {
        "models": mrows,
        "attr_keys": keys,
        "suites": suites,
        "studies": _studies(store, study),
        "imported": [x for x in sources if x],
        "study": study,
        "embedder": s.get("embedder") or st.get("embedder"),
        "calibrated": bool(s.get("calibrated", st.get("calibrated"))),
        "center_from": st.get("center_from"),
        "truncated": s.get("truncated_texts"),
        "n_boot": st.get("n_boot", ms.get("n_boot")),
        "seed": st.get("seed", ms.get("seed")),
        "level": ms.get("level", 0.95),
        "unit": ms.get("resampling_unit"),
        "clusters": ms.get("clusters"),
        "q": st.get("q", ms.get("q")),
        "tau": st.get("tau", ms.get("tau")),
        "n_random": draws,
        "n_perm": perms,
        "floor_pairs": ms.get("floor_pairs", floor.get("pairs")),
        "equivalence": ms.get("equivalence"),
        "responses": st.get("responses"),
        "n_prompts": st.get("prompts", s.get("n_prompts")),
        "n_models": st.get("models", len(used)),
        "skipped": _skipped(s),
        "notes": list(s.get("notes") or []),
        "separability": {"folds": sep.get("folds"), "method": sep.get("pairwise_method")} if sep else None,
        "measured_with": st.get("monoculture_version"),
        "version": __version__,
        "label": measured.label,
        "measured_at": _dt.datetime.fromtimestamp(created_at, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if created_at
        else "unknown",
        "seconds": st.get("seconds"),
    }


def _lineage(tables: dict, summary: dict) -> dict:
    out: dict[str, Any] = {"contrast": [], "accent": []}
    lin = tables.get("lineage")
    if lin is not None and len(lin):
        for attr, r in lin.iterrows():
            out["contrast"].append(
                {
                    "attribute": attr,
                    "within": F.fmt(r.get("within")),
                    "between": F.fmt(r.get("between")),
                    "difference": F.fmt(r.get("difference")),
                    "p": F.fmt(r.get("p_value"), 3),
                    "mantel_r": F.fmt(r.get("mantel_r")),
                    "mantel_p": F.fmt(r.get("mantel_p"), 3),
                    "pairs": f"{int(r.get('within_pairs') or 0)} / {int(r.get('between_pairs') or 0)}",
                }
            )
    acc = tables.get("accent")
    if acc is not None and len(acc):
        for d, r in acc.iterrows():
            out["accent"].append(
                {
                    "derivative": d,
                    "base": r.get("base"),
                    "value": F.fmt(r.get("value")),
                    "lo": F.fmt(r.get("lo")),
                    "hi": F.fmt(r.get("hi")),
                    "prompts": int(r.get("prompts") or 0),
                    "withheld": (r.get("reason") or "denominator near 0") if bool(r.get("unstable", False)) else None,
                }
            )
    return out


def _perspectives(store, study: str | None, notes: list[str]) -> dict | None:
    """The probes section when the store holds probe data; absent otherwise, quietly.

    The section is called once, with one signature: a retry with other arguments would hide an
    error raised inside it (and show another study's probes). A section that fails, on import
    or while building, is left out with a note naming the error, so the rest of the report
    still appears and the failure is seen.
    """
    try:
        from monoculture.probes.report_section import perspectives_section

        sec = perspectives_section(store, study=study)
    except Exception as e:  # noqa: BLE001 - one failing section must not cost the whole report
        notes.append(f"perspectives section left out: {type(e).__name__}: {e}")
        return None
    if not sec or not isinstance(sec, dict):
        return None
    figs = list(sec.get("figures") or [])
    ids = list(sec.get("figure_ids") or [f"perspectives-fig-{i}" for i in range(len(figs))])
    return {
        "title": sec.get("title") or "Perspectives",
        "html": sec.get("html") or "",
        "figures": [{"id": i, "json": script_json(f)} for i, f in zip(ids, figs)],
    }


def _over_time(store, measured, notes: list[str]) -> tuple[dict | None, list[F.Figure]]:
    """The "Over time" section (present when three or more measured models are dated), with the
    measurement's bootstrap size and seed, so its intervals are as precise as the rest."""
    from monoculture.report.over_time import over_time_section

    settings = (measured.summary or {}).get("settings") or {}
    options = {k: settings[k] for k in ("n_boot", "seed") if isinstance(settings.get(k), int)}
    return over_time_section(store, measured.label, notes, **options)


def _figure_context(f: F.Figure) -> dict:
    return {"name": f.name, "title": f.title, "caption": f.caption, "json": script_json(f.to_dict()), "height": f.height}


def _languages(gen: pd.DataFrame) -> dict[str, str]:
    g = gen.drop_duplicates("prompt_key")
    labels = prompt_labels(g["prompt_key"].tolist(), g["prompt_id"].tolist())  # as measure labels them
    return {lab: lang for lab, lang in zip(labels, g["language"]) if isinstance(lang, str) and lang}


def make_figures(measured, attrs: dict, gen: pd.DataFrame) -> tuple[list[F.Figure], list[str]]:
    """Every figure the measurement supports, in page order, and the clustering's model order."""
    t, s = measured.tables, measured.summary
    C = _frame(t, "similarity")
    if C is None or C.empty:
        raise UserError("the measurement has no similarity matrix; rerun `monoculture measure`")
    C.columns = C.columns.map(str)
    C = C.reindex(columns=list(C.index))
    per_model = _frame(t, "per_model")
    per_prompt = _frame(t, "per_prompt")
    groups = _frame(t, "groups")
    n_prompts = _frame(t, "similarity_prompts")
    if n_prompts is not None:
        n_prompts.columns = n_prompts.columns.map(str)
        n_prompts = n_prompts.reindex(index=C.index, columns=C.index)
    level = float(((s.get("settings") or {}).get("level")) or 0.95)
    order_idx, dendro = F.cluster_order(C.to_numpy(dtype=float))
    order = [C.index[i] for i in order_idx]
    floor = (s.get("off_prompt_floor") or {}).get("value") if isinstance(s.get("off_prompt_floor"), dict) else None
    figs = [F.similarity_heatmap(C, n_prompts, order_idx, dendro, floor, bool(s.get("calibrated")))]
    figs.append(F.model_map(C, attrs, per_model))
    loo_pp = _frame(t, "loo_per_prompt")
    for f in (
        F.leave_one_out(per_model, groups, level) if per_model is not None else None,
        F.group_losses(groups, level, (s.get("settings") or {}).get("n_boot")) if groups is not None else None,
        F.diversity(per_model, _frame(t, "lexical"), order) if per_model is not None else None,
        F.separability(
            _frame(t, "pairwise_auc"), order, s.get("separability") if isinstance(s.get("separability"), dict) else None
        ),
        F.voices_histogram(per_prompt, s.get("voices"), len(C)),
        F.language_panels(per_prompt, loo_pp, _languages(gen), order) if per_prompt is not None else None,
    ):
        if f is not None:
            figs.append(f)
    return figs, order


def _environment():
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2", "html.j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    install_filters(env)
    return env


def render(context: dict, template: str = "report.html.j2") -> str:
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    env = _environment()
    ctx = dict(context)
    # Both inline scripts are allowed by their hash: the policy allows no other script, and no
    # string evaluation ('unsafe-eval'), which the SVG figures do not need.
    ctx["plotly_js"], plotly_hash = inline_script(get_plotlyjs())
    ctx["app_js"], app_hash = inline_script((TEMPLATES / "report.js").read_text(encoding="utf-8"))
    ctx["csp"] = content_security_policy([plotly_hash, app_hash])
    ctx["css"] = Markup((TEMPLATES / "report.css").read_text(encoding="utf-8"))
    return env.get_template(template).render(**ctx)


def build_report(
    store_path: str | Path,
    out: str | Path = "report.html",
    *,
    label: str | None = None,
    max_prompts: int = 100,
    export_figures: str | Path | None = None,
    study: str | None = None,
    title: str | None = None,
    loop_settings: dict | None = None,
) -> ReportInfo:
    """Write the report for ``store_path``'s measurement ``label`` (default: the latest).

    ``max_prompts`` bounds the prompts whose answers the explorer holds (0: none); ``study``
    only checks that the measurement is that study's. A store (or study) with loop chains and
    no measurement gets a report of its loops alone. ``export_figures``: a folder to write
    each figure to as PNG and SVG as well. ``loop_settings``: the Loops section's summary
    settings (a study's ``loops: summary:``; None: the defaults).
    """
    from monoculture.loops.summary import keep_summaries

    pending: list = []  # loop summaries computed on the read-only connection, kept once it is closed
    info = _build_report(
        store_path,
        out,
        label=label,
        max_prompts=max_prompts,
        export_figures=export_figures,
        study=study,
        title=title,
        loop_settings=loop_settings,
        pending=pending,
    )
    note = keep_summaries(store_path, pending)
    if note:
        info.notes.append(note)
    return info


def _build_report(
    store_path: str | Path,
    out: str | Path,
    *,
    label: str | None,
    max_prompts: int,
    export_figures: str | Path | None,
    study: str | None,
    title: str | None,
    loop_settings: dict | None,
    pending: list,
) -> ReportInfo:
    """:func:`build_report`'s work, on one read-only connection."""
    from monoculture.results import load_results
    from monoculture.store import Store

    if max_prompts < 0:
        raise UserError(f"--max-prompts must be 0 or more, got {max_prompts}")
    store_path = Path(store_path)
    out = Path(out)
    if out.exists() and out.is_dir():
        raise UserError("is a folder; give a file name such as report.html", where=str(out))
    notes: list[str] = []
    with Store(store_path, read_only=True) as store:
        if not label and loops_only(store, study):
            return _loops_report(
                store,
                store_path,
                out,
                study=study,
                title=title,
                export_figures=export_figures,
                settings=loop_settings,
                pending=pending,
            )
        if study and not label:
            label = _latest_label_of_study(store, study)
        measured = load_results(store, label)
        mstudy = (measured.settings or {}).get("study")
        if study and mstudy != study:
            raise UserError(
                f"the measurement {measured.label!r} is of {'study ' + repr(mstudy) if mstudy else 'the whole store'}, not study {study!r}; "
                f"run `monoculture measure` on the study first, or pass --label"
            )
        lab, created_at, mu = _label_of(store, measured.label)
        gen = store.generations(mstudy)
        gen = gen[~blank_texts(gen["text"].tolist())].reset_index(drop=True)  # the rows measure skipped
        attrs = store.model_attributes()
        figs, order = make_figures(measured, attrs, gen)
        per_model = _frame(measured.tables, "per_model")
        groups = _frame(measured.tables, "groups")

        models_measured = [m for m in order]
        gen_m = gen[gen["model"].isin(models_measured)].reset_index(drop=True)
        vectors = None
        emb_name = measured.summary.get("embedder")
        if emb_name and len(gen_m):
            raw = load_vectors(store, emb_name, gen_m["text"].tolist())
            if raw is not None:
                vectors = unit_rows(raw.astype(np.float64), mu if measured.summary.get("calibrated") else None)
        explorer = build_explorer(
            gen_m, _frame(measured.tables, "per_prompt"), models_measured, attrs, max_prompts=max_prompts, vectors=vectors
        )
        notes += explorer.notes
        methods = _methods(store, measured, gen_m, attrs, per_model, created_at, mstudy)
        perspectives = _perspectives(store, mstudy, notes)
        over_time, time_figs = _over_time(store, measured, notes)
        loops, loop_figs = loops_section(store, mstudy, notes, loop_settings, pending)
        lineage = _lineage(measured.tables, measured.summary)

    sep = measured.summary.get("separability") if isinstance(measured.summary.get("separability"), dict) else None
    name = mstudy or store_path.stem
    context = {
        "title": title or f"monoculture report: {name}",
        "name": name,
        "store": store_path.name,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "headline": headline(measured.summary, per_model, groups),
        "separability": _est(sep) if sep else None,
        "chance": F.fmt(sep.get("chance")) if sep else None,
        "figures": [_figure_context(f) for f in figs],
        "explorer": explorer.payload,
        "explorer_json": script_json(explorer.payload),
        "methods": methods,
        "lineage": lineage,
        "perspectives": perspectives,
        "over_time": over_time and {**over_time, "figures": [_figure_context(f) for f in time_figs]},
        "loops": loops and {**loops, "figures": [_figure_context(f) for f in loop_figs]},
        "notes": notes,
    }
    html = render(context)
    _write_html(out, html)
    exported: list[Path] = []
    if export_figures is not None:
        from monoculture.report.export import export_figures as _export

        exported = _export(figs + time_figs + loop_figs, Path(export_figures))
    return ReportInfo(
        path=out,
        bytes=out.stat().st_size,
        figures=[f.name for f in figs + time_figs + loop_figs],
        explorer_prompts=explorer.held,
        total_prompts=explorer.total,
        label=measured.label,
        exported=exported,
        notes=notes,
        loop_chains=int(loops["total_chains"]) if loops else 0,
    )


def _write_html(out: Path, html: str) -> None:
    """Write the page atomically (a reader never sees half a report), readable by others."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=str(out.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; a report is for sharing
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def loops_page(
    loops: dict, figs: list[F.Figure], *, store: Path, study: str | None, notes: list[str], title: str | None = None
) -> str:
    """The HTML of a loops-only report from the section's data and figures (report/loops.py)."""
    from monoculture import __version__

    context = {
        "title": title or f"monoculture report: {study or store.stem}",
        "store": store.name,
        "study": study,
        "version": __version__,
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loops": {**loops, "figures": [_figure_context(f) for f in figs]},
        "notes": notes,
    }
    return render(context, "loops_report.html.j2")


def _loops_report(
    store,
    store_path: Path,
    out: Path,
    *,
    study: str | None,
    title: str | None,
    export_figures: str | Path | None,
    settings: dict | None = None,
    pending: list | None = None,
) -> ReportInfo:
    """The page of a store (or study) that ran loops and measured nothing: the Loops section alone."""
    notes: list[str] = []
    loops, figs = loops_section(store, study, notes, settings, pending)
    if loops is None:
        raise UserError(
            f"nothing measured yet, and the loop chains could not be summarised ({'; '.join(notes) or 'no chains'}); "
            "run `monoculture measure` or `monoculture loop summary` to see why",
            where=str(store_path),
        )
    _write_html(out, loops_page(loops, figs, store=store_path, study=study, notes=notes, title=title))
    exported: list[Path] = []
    if export_figures is not None:
        from monoculture.report.export import export_figures as _export

        exported = _export(figs, Path(export_figures))
    return ReportInfo(
        path=out,
        bytes=out.stat().st_size,
        figures=[f.name for f in figs],
        explorer_prompts=0,
        total_prompts=0,
        label="",
        exported=exported,
        notes=notes
        + ["no measurement in the store: the report holds its loop chains only (`monoculture measure` adds the rest)"],
        loop_chains=int(loops["total_chains"]),
    )
