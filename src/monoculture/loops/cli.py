"""``monoculture loop``: run chains, import existing ones, summarise their attractors.

``monoculture loop STUDY.yaml`` is short for ``monoculture loop run STUDY.yaml``: the group
sends a first argument that names no subcommand to ``run``.
"""

from __future__ import annotations

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
