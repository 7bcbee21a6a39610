"""``monoculture probe``: ask a study's models the values suite and compare them with countries.

Mounted by the main CLI with ``app.command("probe")(probe_command)``. A UserError becomes one
line on stderr and exit status 2, like every other command; failed requests are stored, retried
by the next run, and make the exit status 3, like ``monoculture run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from monoculture.errors import UserError, user_errors
from monoculture.probes.format import ci as _ci
from monoculture.probes.format import moved_most
from monoculture.probes.format import num as _f
from monoculture.terminal import stderr_console, stdout_console, styled

# markup off and control characters escaped: model and country names print as typed (monoculture.terminal)
console = stdout_console()
err = stderr_console()


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [v.strip() for x in values for v in x.split(",") if v.strip()]
    return out or None


def probe_command(
    study_file: Annotated[Path, typer.Argument(help="study YAML file: its models are probed")],
    suite: Annotated[str, typer.Option("--suite", help="multiple-choice suite: 'values' or a .jsonl path")] = "values",
    method: Annotated[
        str,
        typer.Option("--method", help="logprobs (first-token probabilities of the option letters) | sample (k parsed answers)"),
    ] = "logprobs",
    countries: Annotated[
        Path | None,
        typer.Option(
            "--countries", help="human reference distributions: a GlobalOpinionQA CSV, a long-format file, or a directory of them"
        ),
    ] = None,
    steer: Annotated[
        list[str] | None,
        typer.Option("--steer", help="also ask 'answer as a typical person living in COUNTRY' (repeat for several countries)"),
    ] = None,
    store: Annotated[Path | None, typer.Option("--store", help="DuckDB store file (default: the study's)")] = None,
    languages: Annotated[list[str] | None, typer.Option("--languages", help="only these suite languages, e.g. en,zh,ar")] = None,
    samples: Annotated[
        int | None,
        typer.Option("--samples", help="k answers per item for --method sample (default: the study's samples if > 1, else 20)"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
):
    """Perspective probes: which countries' answers each model's answers resemble, how much the
    language of the question moves them, and whether models agree more than nations do."""
    return _probe(Path(study_file), suite, method, countries, list(steer or []), store, languages, samples, quiet)


@user_errors
def _probe(study_file, suite, method, countries, steer, store, languages, samples, quiet):
    from monoculture.probes import store as pstore
    from monoculture.probes.analysis import load_results
    from monoculture.probes.countries import load_countries
    from monoculture.probes.items import load_items
    from monoculture.probes.runner import METHODS, run_probe
    from monoculture.store import Store
    from monoculture.study import load_study

    study = load_study(study_file)
    langs = _split(languages)
    steer_list = [s.strip() for s in steer if s.strip()]  # not split on commas: country names may hold one
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; use {' or '.join(METHODS)}")
    items = load_items(suite, langs)  # everything is checked before the store is opened
    human = load_countries(countries, items) if countries is not None else None
    path = study.store_path(store)
    with Store(path) as st:
        pstore.ensure_schema(st)
        if human is not None:
            pstore.write_countries(st, human.dists, human.dropped, ",".join(human.sources))
        stats = run_probe(
            study,
            st,
            suite=suite,
            method=method,
            steer=steer_list,
            languages=langs,
            samples=samples,
            console=err,
            show_progress=not quiet,
        )
        results = load_results(st, study=study.name)
    if human is not None:
        console.print(
            f"countries: {len(human.countries)} countries on {len(human.groups)} questions"
            + (f"; {human.unmatched} questions in the file match no suite item" if human.unmatched else "")
            + (f"; {len(human.skipped)} skipped (first: {human.skipped[0]})" if human.skipped else ""),
            highlight=False,
        )
    print_summary(results, method, stats)
    if stats.errors:
        err.print(
            styled(
                "[yellow]{} requests failed[/yellow]; they are stored and retried when you run the same command again",
                stats.errors,
            )
        )
        raise typer.Exit(3)


def print_summary(results, method: str, stats=None, out: Console | None = None) -> None:
    out = out or console
    name = {"logprobs": "first-token probabilities", "sample": "sampled answers"}[method]
    if results is None or method not in results.methods:
        out.print(f"no {method} distributions in the store yet")
        return
    mr = results.methods[method]
    table = Table(title=f"Perspectives ({name}; 95% bootstrap intervals over questions)", title_justify="left")
    table.add_column("model")
    table.add_column("items")
    if results.countries:
        table.add_column("resembles most (1 - JS distance)")
    table.add_column("language sensitivity (JS)")
    table.add_column("moved most by")
    if method == "sample":
        table.add_column("answers: ok / refusal / other")
    for model, r in mr.models.items():
        row = [model, str(r.n_items)]
        if results.countries:
            tops = [f"{c.country} {_f(c.similarity)} [{_f(c.lo)}, {_f(c.hi)}]" for c in r.countries[:3]]
            row.append("\n".join(tops) or "no country shares enough questions")
        s = r.sensitivity
        row.append(f"{_ci((s.mean, s.lo, s.hi))} ({s.n_questions} q)" if s else "one language only")
        row.append(moved_most(s))
        if method == "sample":
            o = r.outcomes
            other = sum(v for k, v in o.items() if k not in ("ok", "refusal"))
            row.append(f"{o.get('ok', 0)} / {o.get('refusal', 0)} / {other}")
        table.add_row(*row)
    out.print(table)
    h = mr.homogeneity
    if h is None:
        out.print("value homogeneity: needs at least two models")
    elif h.countries is None:
        out.print(
            f"value homogeneity: models' mean pairwise JS distance {_ci(h.models)} on {h.n_questions} questions (no country data to compare with)"
        )
    else:
        verdict = (
            "models are more alike than countries"
            if h.difference[2] < 0
            else "models are less alike than countries"
            if h.difference[1] > 0
            else "no clear difference"
        )
        out.print(
            f"value homogeneity: models {_ci(h.models)} vs countries {_ci(h.countries)} mean pairwise JS distance; "
            f"ratio {_ci(h.ratio)} on {h.n_questions} questions: {verdict}",
            highlight=False,
        )
    for model, r in mr.models.items():
        for s in r.steering:
            line = f"steering {model} towards {s.country}: answers moved {_ci(s.shift)} (JS)"
            if s.delta is not None:
                line += f"; similarity to {s.country} {_f(s.base)} -> {_f(s.steered)} (change {_ci(s.delta)}), rank {s.rank_before} -> {s.rank_after} of {s.n_countries}"
            out.print(line, highlight=False)
    if not results.countries:
        out.print("no human reference data in the store: pass --countries to compare models with countries")
