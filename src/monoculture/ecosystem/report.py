"""``ecosystem report``: one self-contained HTML file.

The report is meant to be mailed, archived and opened offline years later, and it displays text
that strangers wrote on the Hub. So it is one file with plotly.js and all styles inline, a
Content-Security-Policy that forbids any network access, every table cell escaped by jinja2's
autoescape, and every figure embedded as JSON in which ``<``, ``>`` and ``&`` are escaped, so no
hub string can close a script element or open a comment (monoculture.report.htmlsafe). The
policy allows the two inline scripts by their hashes and nothing else: no 'unsafe-inline' or
'unsafe-eval' for scripts.

The template lives in ``data/`` (not ``templates/``) because ``data/*`` is what the package
build ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import jinja2
import pandas as pd

from monoculture.ecosystem import adoption, cadence, databases, figures, snapshots
from monoculture.ecosystem.openness import LEVELS
from monoculture.ecosystem.quality import KIND_HELP, Tally
from monoculture.ecosystem.registry import Registry
from monoculture.ecosystem.signals import alerts_table
from monoculture.report.htmlsafe import content_security_policy, inline_script, install_filters


@dataclass
class ReportData:
    """Everything the template shows; built once so the CLI and tests can look at the numbers."""

    as_of: date
    histories: list
    alerts: pd.DataFrame
    all_signals: pd.DataFrame
    cadence: pd.DataFrame
    families: pd.DataFrame
    countries: pd.DataFrame
    shares_over_time: pd.DataFrame
    origins: pd.DataFrame
    origin_month: pd.DataFrame
    origin_total: pd.DataFrame
    relative: pd.DataFrame
    epoch: dict
    trees: list
    snapshots: pd.DataFrame
    issues: pd.DataFrame
    lineage_issues: Tally
    level_meanings: dict


def collect(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    *,
    as_of: date | None = None,
    window_days: int = 365,
    merge_days: int = cadence.DEFAULT_MERGE_DAYS,
    epoch_since: date | None = None,
    step: Callable[[str], None] | None = None,
) -> ReportData:
    step = step or (lambda s: None)
    snapshots.ensure_schema(con)
    databases.ensure_schema(con)
    step("release histories")
    tally = Tally()
    hist = cadence.build_histories(con, registry, as_of=as_of, merge_days=merge_days, tally=tally)
    step("signals")
    all_sig = alerts_table(hist, window_days=window_days, min_strength="n/a")
    step("lineage")
    lin_tally = Tally()
    lineage = adoption.build_lineage(con, lin_tally)
    step("adoption")
    fam = adoption.family_adoption(con, registry, lineage)
    origins = adoption.derivative_origins(con, registry, lineage)
    rel = databases.releases(con)
    epoch = {}
    for ds in sorted(rel["dataset"].unique()) if len(rel) else []:
        epoch[ds] = {
            "country": adoption.epoch_shares(rel, registry, by="country", dataset=ds, since=epoch_since),
            "family": adoption.epoch_shares(rel, registry, by="family", dataset=ds, since=epoch_since),
            "range": (
                max(rel.loc[rel["dataset"] == ds, "published"].min(), pd.Timestamp(epoch_since))
                if epoch_since
                else rel.loc[rel["dataset"] == ds, "published"].min(),
                rel.loc[rel["dataset"] == ds, "published"].max(),
            ),
        }
    step("derivative trees")
    trees = []
    nodes = lineage.nodes()
    for f in registry:
        own = sorted(m for m in nodes if f.owns_repo(m))
        fig, rows = figures.derivative_tree(f.name, lineage, own)
        if fig is not None:
            trees.append({"family": f.key, "name": f.name, "fig": fig, "rows": rows})
    hist_df = snapshots.download_history(con)
    iss = snapshots.issues(con)
    lin_tally.merge(tally)
    return ReportData(
        as_of=hist[0].as_of if hist else (as_of or date.today()),
        histories=hist,
        alerts=all_sig[all_sig["strength"].isin(["weak", "moderate", "strong"])].reset_index(drop=True),
        all_signals=all_sig,
        cadence=cadence.cadence_table(hist),
        families=fam,
        countries=adoption.by_country(fam),
        shares_over_time=adoption.shares_over_time(con, registry),
        origins=origins,
        origin_month=adoption.origin_share_by_month(origins),
        origin_total=adoption.origin_share_total(origins),
        relative=adoption.relative_adoption(hist_df, params_b=databases.params_table(con)),
        epoch=epoch,
        trees=trees,
        snapshots=snapshots.snapshots(con),
        issues=iss,
        lineage_issues=lin_tally,
        level_meanings=dict(registry.openness.meanings),
    )


def _fmt(v, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return "–"
    if kind == "pct":
        return f"{v:.1%}"
    if kind == "p":
        return f"{v:.3g}"
    if kind == "int":
        return f"{int(round(v)):,}"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d")
    return str(v)


def headline(data: ReportData) -> str | None:
    """The sentence behind claims like "63% of new derivatives were built on Chinese bases"."""
    o = data.origins.dropna(subset=["month"])
    if o.empty:
        return None
    tot = adoption.origin_share_total(o)
    top = tot.iloc[0]
    months = sorted(o["month"].unique())
    return (
        f"{top['share']:.0%} of the {o['model_id'].nunique():,} dated derivatives in the store "
        f"({months[0]} to {months[-1]}) were built on bases from {top['country']}."
    )


# Draws every figure from its JSON block. Kept here, not in the template, because the page's
# Content-Security-Policy allows it by the hash of exactly this text.
DRAW_JS = """(function () {
  var divs = document.querySelectorAll("div.figure[data-fig]");
  for (var i = 0; i < divs.length; i++) {
    var div = divs[i];
    var src = document.getElementById(div.getAttribute("data-fig"));
    if (!src) { continue; }
    var fig = JSON.parse(src.textContent);
    Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"]});
  }
})();
"""


def render(data: ReportData, *, title: str = "Ecosystem watch", store_path: str = "") -> str:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("monoculture.ecosystem", "data"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    install_filters(env)
    env.filters["fmt"] = _fmt
    figs: list[tuple[str, str]] = []

    def add(fig) -> str | None:
        if fig is None:
            return None
        fid = f"fig{len(figs)}"
        figs.append((fid, figures.to_json(fig)))
        return fid

    fig_ids = {
        "timeline": add(figures.timeline(data.histories)) if data.histories else None,
        "families": add(figures.family_shares(data.families)) if len(data.families) else None,
        "countries": add(figures.country_shares(data.countries)) if len(data.countries) else None,
        "over_time": add(figures.shares_over_time(data.shares_over_time)),
        "origin_month": add(figures.origin_by_month(data.origin_month)),
    }
    trees = [{**t, "fig_id": add(t["fig"])} for t in data.trees]
    from plotly.offline import get_plotlyjs

    plotly_js, plotly_hash = inline_script(get_plotlyjs())
    draw_js, draw_hash = inline_script(DRAW_JS)
    tpl = env.get_template("report.html.j2")
    return tpl.render(
        title=title,
        d=data,
        figs=figs,
        fig_ids=fig_ids,
        trees=trees,
        headline=headline(data),
        store_path=store_path,
        levels=[(i, n, data.level_meanings.get(n, "")) for i, n in enumerate(LEVELS)],
        plotly_js=plotly_js,
        kind_help=KIND_HELP,
        zip=zip,
        draw_js=draw_js,
        csp=content_security_policy([plotly_hash, draw_hash]),
    )


def build_report(
    con: duckdb.DuckDBPyConnection,
    registry: Registry,
    out: str | Path,
    *,
    as_of: date | None = None,
    window_days: int = 365,
    merge_days: int = cadence.DEFAULT_MERGE_DAYS,
    epoch_since: date | None = None,
    title: str = "Ecosystem watch",
    store_path: str = "",
    step: Callable[[str], None] | None = None,
) -> tuple[Path, ReportData]:
    data = collect(con, registry, as_of=as_of, window_days=window_days, merge_days=merge_days, epoch_since=epoch_since, step=step)
    if step:
        step("render")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data, title=title, store_path=store_path), encoding="utf-8")
    return out, data
