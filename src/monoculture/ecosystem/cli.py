"""``monoculture ecosystem ...``: fetch, import, report, alerts, families.

Mounted by the main CLI as a sub-app. Each command catches :class:`UserError` itself and prints
it on one line with exit status 2, so the sub-app behaves the same when it is run on its own.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from monoculture.errors import UserError, reported
from monoculture.terminal import description_column, stderr_console, stdout_console, styled

app = typer.Typer(
    name="ecosystem",
    help="Ecosystem watch: early signs that open-weight model families retreat, from Hub metadata and public model databases.",
    no_args_is_help=True,
    add_completion=False,
)
# markup off and control characters escaped: Hub ids and file names print as typed (monoculture.terminal)
console = stderr_console()
out = stdout_console()

StoreOpt = typer.Option("monoculture.duckdb", "--store", "-s", help="DuckDB store file (shared with the rest of monoculture).")
RegistryOpt = typer.Option(None, "--registry", help="YAML file that extends or overrides the shipped family registry.")


def _date(v: str | None, name: str) -> date | None:
    if v is None:
        return None
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise UserError(f"{name} must be a date like 2025-06-30, got {v!r}") from None


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        description_column(),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _open(store: Path, *, create: bool = True):
    from monoculture.store import Store

    return Store(store, create=create)


@app.command()
def fetch(
    families: str = typer.Option(
        ..., "--families", "-f", help="Comma-separated registry keys, e.g. qwen,llama,mistral,deepseek,gemma,phi,jais."
    ),
    store: Path = StoreOpt,
    registry: Path | None = RegistryOpt,
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="Hub endpoint (default: huggingface_hub's, which honours HF_ENDPOINT)."
    ),
    derivatives_top: int = typer.Option(
        3, "--derivatives-top", min=0, help="Fetch derivatives of this many most-downloaded checkpoints per family."
    ),
    derivative_depth: int = typer.Option(
        1, "--derivative-depth", min=0, help="Follow derivatives of derivatives this many levels down."
    ),
    max_pages: int | None = typer.Option(
        None, "--max-pages", min=1, help="Stop each query after this many pages (recorded in the snapshot note)."
    ),
    page_size: int = typer.Option(1000, "--page-size", min=1, max=1000, help="Models per page."),
    max_retries: int = typer.Option(6, "--max-retries", min=0, help="Retries per request on 429, 5xx and dropped connections."),
    save_dir: Path | None = typer.Option(
        None, "--save-dir", help="Also write the snapshot as JSON here (same shape `import` reads)."
    ),
):
    """Fetch a dated snapshot of the families' Hub metadata (resumes an interrupted fetch with the same options)."""
    from monoculture.ecosystem.fetch import fetch_families, save_snapshot_file
    from monoculture.ecosystem.hub_client import HubClient
    from monoculture.ecosystem.registry import load_registry

    with reported():
        reg = load_registry(registry)
        fams = reg.select(families)
        with _open(store) as st, HubClient(endpoint, max_retries=max_retries) as client, _progress() as prog:
            task = prog.add_task("fetching", total=None)
            models = [0]

            def on_query(q: str) -> None:
                prog.update(task, description=q)

            def on_page(q: str, n: int) -> None:
                models[0] += n
                prog.update(task, advance=1, description=f"{q} · {models[0]:,} models")

            res = fetch_families(
                st.con,
                fams,
                client,
                derivatives_top=derivatives_top,
                derivative_depth=derivative_depth,
                max_pages=max_pages,
                page_size=page_size,
                on_query=on_query,
                on_page=on_page,
            )
            saved = save_snapshot_file(st.con, res.snapshot_id, save_dir) if save_dir else None
        s = res.stats
        out.print(
            styled(
                "snapshot [bold]{}[/bold]{}: {} models from {} queries; {} requests, {} rate-limited, {} network errors, waited {}s; issues: {}",
                res.snapshot_id,
                " (resumed)" if res.resumed else "",
                f"{res.models:,}",
                res.queries,
                s.get("requests", 0),
                s.get("rate_limited", 0),
                s.get("network_errors", 0),
                f"{s.get('waited_s', 0):.0f}",
                res.tally.summary(),
            ),
            highlight=False,
        )
        if saved:
            out.print(f"saved {saved}", highlight=False)


@app.command("import")
def import_(
    paths: list[Path] = typer.Argument(
        ...,
        help="Snapshot JSON, lineage CSV, Epoch CSV, llmfit hf_models.json, MOT YAML, organisation tables, or folders of them.",
    ),
    store: Path = StoreOpt,
    registry: Path | None = RegistryOpt,
    kind: str = typer.Option(
        "auto",
        "--kind",
        help="Force a format: auto, snapshot, lineage, epoch, hf-models, mot, org-regions, organisations, params, date-corrections.",
    ),
    taken_at: str | None = typer.Option(
        None, "--taken-at", help="When the snapshot was taken (YYYY-MM-DD), for files that do not say."
    ),
):
    """Import offline files into the store, all or nothing: a file that cannot be read imports nothing and every such file is named (re-importing a file replaces what it wrote)."""
    from monoculture.ecosystem.importers import collect, import_paths
    from monoculture.ecosystem.quality import snapshot_time
    from monoculture.ecosystem.registry import load_registry

    with reported():
        ts = snapshot_time(_date(taken_at, "--taken-at"), field_name="--taken-at")
        reg = load_registry(registry)
        files = collect(paths)
        created = not store.exists()
        try:
            with _open(store) as st, _progress() as prog:
                task = prog.add_task("importing", total=len(files))
                results = import_paths(
                    st.con,
                    paths,
                    reg,
                    kind=kind,
                    taken_at=ts,
                    on_file=lambda f: prog.update(task, advance=1, description=f"importing {f.name[:40]}"),
                )
        except UserError:
            if created:  # a refused import into a new store leaves no empty store behind
                for f in (store, store.with_name(store.name + ".wal")):
                    f.unlink(missing_ok=True)
            raise
        t = Table(title=f"Imported into {store}", show_lines=False)
        for c in ("file", "kind", "rows", "into", "issues"):
            t.add_column(c, overflow="fold")
        skipped = [r for r in results if r.kind == "skipped"]
        for r in results:
            if r.kind != "skipped":
                t.add_row(Path(r.path).name, r.kind, f"{r.rows:,}", r.target, r.tally.summary())
        out.print(t)
        for r in skipped:
            out.print(f"skipped {r.path}: {r.skipped}", highlight=False)


@app.command()
def report(
    output: Path = typer.Option(Path("ecosystem.html"), "--output", "-o", help="HTML file to write."),
    store: Path = StoreOpt,
    registry: Path | None = RegistryOpt,
    as_of: str | None = typer.Option(
        None, "--as-of", help="Evaluate signals as of this date (default: the newest date in the data)."
    ),
    window_days: int = typer.Option(365, "--window-days", min=30, help="Window of the rate-drop test."),
    merge_days: int = typer.Option(7, "--merge-days", min=0, help="Releases this close together form one release event."),
    epoch_since: str | None = typer.Option(
        None, "--epoch-since", help="Count only Epoch rows published on or after this date in the share tables."
    ),
    title: str = typer.Option("Ecosystem watch", "--title"),
):
    """Write the ecosystem report: timelines, adoption shares, derivative trees, alerts (one self-contained HTML file)."""
    from monoculture.ecosystem.registry import load_registry
    from monoculture.ecosystem.report import build_report

    with reported():
        reg = load_registry(registry)
        with _open(store, create=False) as st, _progress() as prog:
            steps = ["release histories", "signals", "lineage", "adoption", "derivative trees", "render"]
            task = prog.add_task("report", total=len(steps))
            path, data = build_report(
                st.con,
                reg,
                output,
                as_of=_date(as_of, "--as-of"),
                window_days=window_days,
                merge_days=merge_days,
                epoch_since=_date(epoch_since, "--epoch-since"),
                title=title,
                store_path=str(store),
                step=lambda s: prog.update(task, advance=1, description=s),
            )
            prog.update(task, completed=len(steps), description="done")
        out.print(
            f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(data.alerts)} alerts as of {data.as_of}", highlight=False
        )


@app.command()
def alerts(
    store: Path = StoreOpt,
    registry: Path | None = RegistryOpt,
    families: str | None = typer.Option(None, "--families", "-f", help="Only these registry keys (comma-separated)."),
    as_of: str | None = typer.Option(None, "--as-of", help="Evaluate as of this date (default: the newest date in the data)."),
    min_strength: str = typer.Option("weak", "--min-strength", help="Lowest strength shown: n/a, none, weak, moderate, strong."),
    window_days: int = typer.Option(365, "--window-days", min=30),
    merge_days: int = typer.Option(7, "--merge-days", min=0),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
):
    """Print the retreat signals: one table, one line a signal."""
    from monoculture.ecosystem.cadence import build_histories
    from monoculture.ecosystem.registry import load_registry
    from monoculture.ecosystem.signals import STRENGTHS, alerts_table

    with reported():
        if min_strength not in STRENGTHS:
            raise UserError(f"--min-strength must be one of {', '.join(STRENGTHS)}")
        if fmt not in ("table", "csv", "json"):
            raise UserError("--format must be table, csv or json")
        reg = load_registry(registry)
        with _open(store, create=False) as st:
            hist = build_histories(st.con, reg, reg.select(families), as_of=_date(as_of, "--as-of"), merge_days=merge_days)
        df = alerts_table(hist, window_days=window_days, min_strength=min_strength)
        if fmt == "csv":
            sys.stdout.write(df.to_csv(index=False))
            return
        if fmt == "json":
            sys.stdout.write(json.dumps(df.to_dict("records"), indent=1, default=str) + "\n")
            return
        as_of_d = hist[0].as_of if hist else None
        t = Table(title=f"Retreat signals as of {as_of_d} (strength ≥ {min_strength})")
        for c in ("family", "signal", "strength"):
            t.add_column(c)
        t.add_column("p", justify="right")
        t.add_column("evidence", overflow="fold")
        colours = {"strong": "bold red", "moderate": "dark_orange", "weak": "yellow"}
        for r in df.itertuples():
            p = "" if r.p_value is None or r.p_value != r.p_value else f"{r.p_value:.3g}"
            t.add_row(r.name, r.signal, Text(r.strength, style=colours.get(r.strength, "dim")), p, r.evidence)
        out.print(t)
        if df.empty:
            out.print("no signal at this strength", highlight=False)


@app.command("families")
def families_(registry: Path | None = RegistryOpt):
    """List the family registry: organisations, country, flagships and their openness."""
    from monoculture.ecosystem.openness import level_name
    from monoculture.ecosystem.registry import load_registry

    with reported():
        reg = load_registry(registry)
        t = Table(title="Family registry (" + " + ".join(reg.sources) + ")")
        for c in ("key", "name", "organisations", "country", "flagships (date, openness)"):
            t.add_column(c, overflow="fold")
        for f in reg:
            fl = "; ".join(f"{x.name} {x.date} {level_name(x.level)}" for x in f.flagships[-4:])
            t.add_row(
                f.key,
                f.name,
                ", ".join(f.organisations),
                f.country or "",
                (f"… {len(f.flagships) - 4} earlier; " if len(f.flagships) > 4 else "") + fl,
            )
        out.print(t)
