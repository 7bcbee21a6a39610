"""``monoculture trend``: the command the CLI registers (see trend_command)."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.table import Table
from typer import Argument, Option

from monoculture.trends.analysis import MODEL_SERIES, WINDOW_SERIES, TrendResult


def trend_command(
    target: str | None = Argument(None, help="store file or study YAML (default ./monoculture.duckdb)"),
    store: Path | None = Option(None, "--store", help="DuckDB store file (default: the study's, else ./monoculture.duckdb)"),
    label: str | None = Option(None, "--label", help="which measurement's embeddings (default: the latest)"),
    dates_file: Path | None = Option(None, "--dates", help="CSV (model, released, source) overriding the shipped dates"),
    period: str = Option("year", "--period", help="cohorts: quarter, half or year"),
    window: int = Option(1, "--window", help="rolling windows of N consecutive periods, stepping one period (1: cohorts)"),
    n: int | None = Option(None, "--n", help="models per random subset for the equal-n voices (default: the smallest cohort)"),
    bootstrap: int = Option(1000, "--bootstrap", "-B", help="bootstrap replicates (prompt clusters and models)"),
    permutations: int = Option(999, "--permutations", help="shuffles of the release dates for each slope's p-value"),
    seed: int = Option(0, "--seed"),
    as_json: bool = Option(False, "--json", help="print the series and slopes as one JSON object"),
):
    """Is the field narrowing release after release? Series over release dates and their slopes
    per year, with bootstrap intervals and permutation p-values (docs/trend.md)."""
    from monoculture.cli import resolve_store  # lazily: monoculture.cli imports this module
    from monoculture.errors import reported
    from monoculture.results import dumps
    from monoculture.store import Store
    from monoculture.trends.analysis import trend_analysis

    with reported():
        path, study = resolve_store(target, store, must_exist=True)
        with Store(path, read_only=True) as st:
            label_ = label
            if label_ is None and study is not None:
                from monoculture.results import resolve_label

                label_ = resolve_label(st, study=study)
            result = trend_analysis(
                st,
                label=label_,
                dates_file=str(dates_file) if dates_file else None,
                period=period,
                window=window,
                n=n,
                n_boot=bootstrap,
                n_perm=permutations,
                seed=seed,
            )
    if as_json:
        sys.stdout.write(dumps(result.to_json_dict()) + "\n")
        return
    print_trend(result)


def _f(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ci(ci) -> str:
    return "-" if ci is None or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def print_trend(result: TrendResult) -> None:
    from monoculture.terminal import stdout_console, styled

    console = stdout_console(highlight=False, soft_wrap=True)
    d = result.to_json_dict()
    s = result.settings
    console.print(
        styled(
            "[bold]trend[/bold] over {} dated models ({} without a date left out); measurement {}",
            d["dated"],
            d["undated"]["count"],
            s.get("label", "-"),
        )
    )
    for name in MODEL_SERIES:
        t = Table(title=name, title_justify="left")
        for col in ("released", "model", "value", "95% CI"):
            t.add_column(col)
        for pt in d["series"][name]:
            t.add_row(pt["date"], pt["models"][0], _f(pt["value"]), _ci(pt["ci"]))
        console.print(t)
    for name in WINDOW_SERIES:
        t = Table(title=name + (f" (n = {s['n']})" if name == "voices_equal_n" else ""), title_justify="left")
        for col in ("window", "models", "value", "95% CI"):
            t.add_column(col)
        for pt in d["series"][name]:
            t.add_row(pt["label"], str(pt["n_models"]), _f(pt["value"]), _ci(pt["ci"]))
        console.print(t)
    t = Table(
        title="slopes per year (p: release dates shuffled; per-model series: the excess over their shuffled-date drift)",
        title_justify="left",
    )
    for col in ("series", "group", "slope", "95% CI", "p", "models", "raw (drift)"):
        t.add_column(col)
    for sl in d["slopes"]:
        excess = sl.get("tested", "slope") != "slope"
        t.add_row(
            sl["series"],
            sl["group"] or "all",
            _f(sl["value"], 4),
            _ci(sl["ci"]) if sl["ci"][0] is None else f"[{sl['ci'][0]:.4f}, {sl['ci'][1]:.4f}]",
            _f(sl["p"]),
            f"{sl['models']}{' (few)' if sl['few_models'] else ''}",
            f"{_f(sl['raw'], 4)} ({_f(sl['drift'], 4)})" if excess else "",
        )
    console.print(t)
    for note in d["notes"]:
        console.print(f"note: {note}", style="dim")
