"""``monoculture loop``: run chains, import existing ones, summarise their attractors.

``monoculture loop STUDY.yaml`` is short for ``monoculture loop run STUDY.yaml``: the group
sends a first argument that names no subcommand to ``run``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from typer.core import TyperGroup


class _RunByDefault(TyperGroup):
    """A group whose unknown first word is the argument of ``run`` (the study file)."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-") and "run" in self.commands:
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_RunByDefault,
    no_args_is_help=True,
    help="Feedback loops: chains of models reading each other's outputs, their attractors, drift and motifs.",
)


# -- monoculture loop import <format> PATH ---------------------------------------------------
import_app = typer.Typer(no_args_is_help=True, help="Import chains that already exist, without running a model.")
app.add_typer(import_app, name="import")


@import_app.command("telephone")
def import_telephone_cmd(
    path: Path = typer.Argument(..., help="a TelephoneGameLLM Results/ folder, or a model, task or run folder below it"),
    store: Path | None = typer.Option(None, "--store", help="DuckDB store file (default ./monoculture.duckdb)"),
    study: str = typer.Option("telephone", "--study", help="the study the chains are listed under"),
):
    """Import TelephoneGameLLM chains (Results/<model>/<task>/<text>/seed_<k>/output0.json).

    Every file is checked first; a damaged one refuses the whole import, naming it, and leaves
    the store as it was. Reimporting adds nothing."""
    from monoculture.cli import resolve_store
    from monoculture.errors import reported
    from monoculture.loops.telephone import import_telephone
    from monoculture.store import Store
    from monoculture.terminal import stdout_console

    with reported():
        target, _ = resolve_store(None, store)
        created = not target.exists()
        try:
            with Store(target) as st:
                n = import_telephone(st, path, study=study)
        except BaseException:
            if created:  # a refused import into a new store leaves no store behind
                for f in (target, target.with_name(target.name + ".wal")):
                    f.unlink(missing_ok=True)
            raise
        stdout_console().print(
            f"read {n['files']} files: {n['chains']} chains ({n['new_chains']} new) of {n['models']} models, "
            f"{n['tasks']} tasks, {n['seeds']} seed texts; {n['steps']} steps ({n['new_steps']} new, "
            f"{n['steps'] - n['new_steps']} already in the store), {n['empty_texts']} empty texts kept; "
            f"study {study} -> {target}",
            markup=False,
            highlight=False,
        )


# -- monoculture loop run STUDY.yaml ---------------------------------------------------------
@app.command("run")
def run_cmd(
    study_file: Path = typer.Argument(..., help="study YAML file with a loops: section"),
    store: Path | None = typer.Option(None, "--store", help="DuckDB store file (default: the study's)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    check: bool = typer.Option(False, "--check", help="check the study and the loops section, say what would run, write nothing"),
):
    """Run a study's loops: every chain, step by step. Safe to interrupt and rerun: each chain
    continues where it stopped, and failed steps are retried. Exit status 3 when steps failed."""
    from monoculture.errors import UserError, reported
    from monoculture.loops.runner import describe_plan, prepare_loops, run_loops
    from monoculture.store import Store
    from monoculture.study import load_study
    from monoculture.terminal import stderr_console, stdout_console, styled

    out_console = stdout_console()
    with reported():
        study = load_study(study_file)
        if study.loops is None:
            raise UserError("the study has no loops: section (see docs/loops.md, Running loops)", where=str(study.path))
        prepared = prepare_loops(study)  # every check before the store file is even created
        path = study.store_path(store)
        if check:
            out_console.print(styled("[bold]{}[/bold]: valid. {}", study.path, describe_plan(prepared)))
            out_console.print(f"store: {path} (nothing was run or written)", highlight=False)
            return
        with Store(path) as st:
            res = run_loops(study, st, console=stderr_console(), show_progress=not quiet, prepared=prepared)
        out_console.print(
            styled(
                "[bold]{}[/bold]: "
                + f"{res.chains} chains, {res.generated} steps generated, {res.skipped} already in the store, "
                f"{res.failed} failed{' (rerun to retry)' if res.failed else ''}; "
                f"{res.finished} of {res.chains} chains complete"
                + (f"; {res.empty} empty texts kept" if res.empty else "")
                + " -> {}",
                study.name,
                path,
            )
        )
        if res.images is not None and hasattr(res.images, "describe"):
            out_console.print(f"images: {res.images.describe()}", highlight=False)
    if res.all_failed:
        raise typer.Exit(3)


# -- monoculture loop summary [STORE or STUDY.yaml] -------------------------------------------
@app.command("summary")
def summary_cmd(
    target: str | None = typer.Argument(None, help="store file or study YAML (default ./monoculture.duckdb)"),
    store: Path | None = typer.Option(None, "--store", help="DuckDB store (default: the study's, else ./monoculture.duckdb)"),
    study: str | None = typer.Option(None, "--study", help="only this study's chains (default: the study file's, else all)"),
    x_from: str | None = typer.Option(
        None, "--x-from", help="x: seed (f(x_0)) or first (f(x_1), the paper's length variant) [default: seed]"
    ),
    scorers: str | None = typer.Option(
        None, "--scorers", help="comma-separated scorer names [default: length,positivity,difficulty]"
    ),
    embedder: str | None = typer.Option(
        None, "--embedder", help="embedder for drift, convergence, motifs ('none': leave out) [default: tfidf]"
    ),
    bootstrap: int | None = typer.Option(None, "--bootstrap", "-B", help="bootstrap resamples of seeds [default: 1000]"),
    permutations: int | None = typer.Option(None, "--permutations", help="label shuffles for the paired test [default: 999]"),
    seed: int | None = typer.Option(None, "--seed", help="[default: 0]"),
    recompute: bool = typer.Option(False, "--recompute", help="compute it again even if the store holds it"),
    as_json: bool = typer.Option(False, "--json", help="print the whole summary as one JSON object (attractors first)"),
):
    """The attractors of every model and task (strength, position, interval, p), the paired tests
    between models, and (with --json) trajectories, drift, convergence, diversity and motifs.

    Settings left out come from the study file's ``loops: summary:`` (when a study file is
    given), else the defaults. The summary is kept in the store (table loop_summaries) and read
    back while the chains and settings are unchanged; the report reads it too."""
    import sys

    from monoculture.cli import resolve_store  # lazily: monoculture.cli imports this module
    from monoculture.errors import reported
    from monoculture.loops.summary import print_summary, stored_loop_summary, study_file_settings
    from monoculture.results import dumps
    from monoculture.store import Store

    with reported():
        path, study_name = resolve_store(target, store, must_exist=True)
        settings = study_file_settings(target)
        given = {"x_from": x_from, "bootstrap": bootstrap, "seed": seed, "permutations": permutations}
        settings |= {k: v for k, v in given.items() if v is not None}
        if scorers is not None:
            settings["scorers"] = [s.strip() for s in scorers.split(",") if s.strip()]
        if embedder is not None:
            settings["embedder"] = None if embedder.lower() == "none" else embedder
        with Store(path) as st:
            result, _ = stored_loop_summary(st, study or study_name, recompute=recompute, **settings)
    if as_json:
        sys.stdout.write(dumps(result) + "\n")
        return
    print_summary(result)
