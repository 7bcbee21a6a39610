"""``monoculture demo``: the command the CLI registers (see demo_command)."""

from __future__ import annotations

from pathlib import Path

import typer

from monoculture.demo import DEFAULT_DIR

OUT = typer.Option(DEFAULT_DIR, "-o", "--out", help="folder for the demo's store and reports (reused by a rerun)")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress, only the headline")


def demo_command(out: Path = OUT, quiet: bool = QUIET):
    """Measure real outputs of real models shipped in the package (Arena-Hard, NoveltyBench):
    no network, no model download. Writes OUT/report.html and OUT/noveltybench.html."""
    from rich.console import Console

    from monoculture.demo import run_demo
    from monoculture.errors import reported

    with reported():
        run_demo(
            out,
            console=Console(markup=False, highlight=False, soft_wrap=True),
            err=Console(stderr=True, markup=False, highlight=False, soft_wrap=True),
            show_progress=not quiet,
        )
