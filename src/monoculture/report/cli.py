"""``monoculture report``: the command the CLI registers (see report_command)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer import Argument, Option


def report_command(
    target: str | None = Argument(None, help="store file or study YAML (default ./monoculture.duckdb)"),
    out: Path = Option(Path("report.html"), "-o", "--out", help="the HTML file to write"),
    store: Path | None = Option(None, "--store", help="DuckDB store file (default: the study's, else ./monoculture.duckdb)"),
    label: str | None = Option(
        None,
        "--label",
        help="which measurement: a label from `monoculture ls`, a unique prefix of it, or of its hash tag (default: the latest)",
    ),
    export_figures: Path | None = Option(None, "--figures", help="folder: also write each figure as PNG and SVG"),
    max_prompts: int = Option(
        100, "--max-prompts", help="prompts whose answers the explorer holds (the fewest- and most-voiced; 0: none)"
    ),
):
    """Write a self-contained HTML report of the latest measurement: headline, figures, prompt explorer, methods."""
    from monoculture.cli import resolve_store  # lazily: monoculture.cli imports this module
    from monoculture.errors import reported
    from monoculture.loops.summary import study_file_settings
    from monoculture.report.build import build_report
    from monoculture.terminal import stderr_console, stdout_console

    with reported():
        path, study = resolve_store(target, store, must_exist=True)
        info = build_report(
            path,
            out,
            label=label,
            max_prompts=max_prompts,
            export_figures=export_figures,
            study=study,
            loop_settings=study_file_settings(target) or None,  # a study file's loops: summary:
        )
    console = stdout_console()
    if not info.label:  # a loops-only report: no measurement, no explorer
        loops = f"the Loops section alone ({info.loop_chains} loop chains; nothing measured yet)"
        console.print(
            f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; {len(info.figures)} figures; {loops})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        held = (
            f"answers to all {info.total_prompts} prompts"
            if info.explorer_prompts == info.total_prompts
            else f"answers to {info.explorer_prompts} of {info.total_prompts} prompts"
        )
        loops = f"; Loops section: {info.loop_chains} chains" if info.loop_chains else ""
        console.print(
            f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; {len(info.figures)} figures; explorer holds {held}{loops})",
            highlight=False,
            soft_wrap=True,
        )
    if info.exported:
        console.print(f"wrote {len(info.exported)} figure files to {export_figures}", highlight=False, soft_wrap=True)
    for n in info.notes:
        stderr_console().print(f"note: {n}", style="dim", highlight=False, soft_wrap=True)


def app() -> typer.Typer:
    """A one-command app, for running the report without the main CLI (tests, debugging)."""
    a = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    a.command()(report_command)
    return a
