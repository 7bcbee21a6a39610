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
