"""``monoculture study``: every phase a study file names, in order, each resumable.

The phases are the existing commands' functions, called the same way: ``run`` (collect,
:func:`monoculture.collect.run_study`), ``probe`` when the file has ``probes:``
(:func:`monoculture.probes.runner.run_probe`), ``loops`` when it has ``loops:``
(:func:`monoculture.loops.runner.run_loops`), ``measure`` when it has ``measure:``
(:func:`monoculture.measure.measure`) and ``report`` when it has ``report:``
(:func:`monoculture.report.build.build_report`). Nothing here computes a figure.

Everything is checked before the store is opened (:func:`plan_study`): the spec, every section
the invocation will run, suites, backends' params and credentials, the embedder's name, the
probe suite and country data, the report's folder. ``--check`` runs those checks for every
section the file names, and stops there.

A second invocation does no work the store already holds. Collect and probes ask only for
what is missing (their rows are keyed by what determines them). A measurement is reused when
the request and the data are the ones it was made from: the ``study_phases`` table records, per
study, a digest of the ``measure:`` request and of the measured rows (generation keys and
texts, prompt groups, model attributes), and the label it produced. The report is rewritten only
when its inputs (that measurement, the probe tables, the report options) changed, or when the
file is missing or not the one written last. A kill at any point leaves the store as the last
finished batch left it; the state row is written after its phase's results, so a kill between
the two only makes the next invocation redo that one phase.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from monoculture.errors import UserError
from monoculture.hashing import digest, text_hash
from monoculture.study import Study, load_study
from monoculture.terminal import styled

PHASES = ("run", "probe", "loops", "measure", "report")
#: The section of the study file that names each optional phase.
SECTION = {"probe": "probes", "loops": "loops", "measure": "measure", "report": "report"}
#: The package each built-in backend's engine needs (``--check`` says when it is absent here).
ENGINES = {"transformers": "transformers", "vllm": "vllm", "llamacpp": "llama_cpp"}

STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS study_phases (
    study TEXT, phase TEXT, inputs TEXT, detail JSON, updated_at DOUBLE, PRIMARY KEY (study, phase)
);
"""


@dataclass
class StudyPlan:
    """A study checked in full: the phases to run and what each needs, loaded once."""

    study: Study
    store: Path
    phases: list[str]
    named: list[str]
    prepared: Any = None  # collect.Prepared
    loops: Any = None  # loops.runner.PreparedLoops
    probe_items: list | None = None
    countries: Any = None  # probes.countries.CountryData
    report: Path | None = None
    figures: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class PhaseOutcome:
    phase: str
    seconds: float
    did_work: bool
    line: str


@dataclass
class StudyOutcome:
    """What an invocation did, phase by phase; ``failed`` counts failed generations and probe
    requests (stored, retried by the next invocation: exit status 3)."""

    phases: list[PhaseOutcome] = field(default_factory=list)
    generated: int = 0
    probed: int = 0
    embedded: int = 0
    measured: bool = False
    reported: bool = False
    failed: int = 0
    looped: int = 0  # loop steps generated
    label: str | None = None


# -- planning: every check, nothing written ----------------------------------------------------
def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for x in values for v in x.split(",") if v.strip()]


def select_phases(study: Study, only: Sequence[str] = (), skip: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(phases to run, phases the file names), in the order they run."""
    only, skip = _split(only), _split(skip)
    for opt, names in (("--only", only), ("--skip", skip)):
        for name in names:
            if name not in PHASES:
                raise UserError(f"{opt} {name!r}: not a phase; the phases are {', '.join(PHASES)}")
    # a study without suites (loops only) has nothing for `run` to collect
    named = (["run"] if study.suites else []) + [p for p in PHASES[1:] if getattr(study, SECTION[p]) is not None]
    for name in only:
        if name not in named:
            what = SECTION.get(name, "suites")
            raise UserError(f"--only {name}: the study file has no {what}: section", where=str(study.path))
    return [p for p in named if (not only or p in only) and p not in skip], named


def plan_study(
    study_file: str | Path, *, only: Sequence[str] = (), skip: Sequence[str] = (), store: Path | None = None, check: bool = False
) -> StudyPlan:
    """Load the study and check what this invocation runs (with ``check``: every section the
    file names). Raises UserError naming the file and the field; opens no store."""
    study = load_study(study_file)
    phases, named = select_phases(study, only, skip)
    plan = StudyPlan(study, study.store_path(store), phases, named)
    checked = named if check else phases
    if "run" in checked:
        from monoculture.collect import prepare_run

        plan.prepared = prepare_run(study)
        if check:
            plan.notes += _engine_notes(study)
    if "probe" in checked:
        _check_probes(plan)
    if "loops" in checked:
        from monoculture.loops.runner import prepare_loops

        plan.loops = prepare_loops(study)
    if "measure" in checked:
        _check_measure(plan)
    if "report" in checked:
        _check_report(plan)
    if not check and not ({"run", "probe", "loops"} & set(phases)) and phases and not plan.store.is_file():
        raise UserError(
            f"no store at {plan.store}: the {' and '.join(phases)} phase needs what `run` collects; run the study without --only/--skip first"
        )
    return plan


def _field_error(study: Study, name: str, e: UserError | str) -> UserError:
    return UserError(f"field {name!r}: {e}", where=str(study.path))


def _engine_notes(study: Study) -> list[str]:
    notes = []
    for backend in sorted({m.backend for m in study.models}):
        module = ENGINES.get(backend)
        if module and importlib.util.find_spec(module) is None:
            notes.append(
                f"backend {backend!r} needs {module.replace('_', '-')}, not installed here: "
                f"pip install 'monoculture[{backend}]' on the machine that runs the study"
            )
    return notes


def _check_probes(plan: StudyPlan) -> None:
    from monoculture.backends import backend_class
    from monoculture.probes.countries import load_countries
    from monoculture.probes.items import load_items
    from monoculture.suites import suite_path

    study, p = plan.study, plan.study.probes
    assert p is not None
    try:
        suite_path(p.suite)
    except UserError as e:
        raise _field_error(study, "probes.suite", e) from None
    try:
        plan.probe_items = load_items(p.suite, p.languages)
    except UserError as e:
        raise _field_error(study, "probes.languages" if p.languages and "no items" in str(e) else "probes.suite", e) from None
    for m in study.models:
        try:
            cls = backend_class(m.backend)
        except UserError:
            continue  # a plugin whose engine is absent: collect's preflight names it
        if p.method == "logprobs" and not getattr(cls, "supports_logprobs", False):
            raise _field_error(
                study, "probes.method", f"model {m.name!r}: backend {m.backend!r} cannot expose log-probabilities; use sample"
            )
        cls.preflight(m)
    if p.countries is not None:
        path = study.resolve_path(p.countries)
        if not path.exists():
            raise _field_error(study, "probes.countries", f"no such file or folder: {path}")
        try:
            plan.countries = load_countries(path, plan.probe_items)
        except UserError as e:
            raise _field_error(study, "probes.countries", e) from None


def _attribute_values(study: Study, attr: str) -> set[str]:
    out = set()
    for m in study.models:
        v = m.attributes.model_dump().get(attr)
        if v is not None:
            out.add(str(v))
    return out


def _check_measure(plan: StudyPlan) -> None:
    from monoculture.embed import DEFAULT_EMBEDDER, check_embedder_name
    from monoculture.measure import GROUP_ATTRIBUTES

    study, m = plan.study, plan.study.measure
    assert m is not None
    if not study.suites:
        raise _field_error(
            study,
            "measure",
            "measures the answers to the study's suites, and it names none; a loop's measures: monoculture loop summary",
        )
    note = check_embedder_name(m.embedder or DEFAULT_EMBEDDER)
    if note:
        plan.notes.append(note)
    names = {x.name for x in study.models}
    for g in m.groups or []:
        if not _attribute_values(study, g):
            raise _field_error(
                study, "measure.groups", f"no model of the study has the attribute {g!r} (set it under attributes:)"
            )
    if m.reference is not None and m.reference not in names:
        raise _field_error(
            study, "measure.reference", f"{m.reference!r} is not a model of the study; models: {', '.join(sorted(names))}"
        )
    values = set().union(*(_attribute_values(study, g) for g in (m.groups or GROUP_ATTRIBUTES)))
    keys = {f"{g}={v}" for g in (m.groups or GROUP_ATTRIBUTES) for v in _attribute_values(study, g)}
    for w in m.what_if_removed:
        if w not in names | values | keys:
            raise _field_error(
                study, "measure.what_if_removed", f"{w!r} is neither a model of the study nor a value of its groups"
            )


def _check_report(plan: StudyPlan) -> None:
    study, r = plan.study, plan.study.report
    assert r is not None
    out = study.resolve_path(r.path)
    if out.is_dir():
        raise _field_error(study, "report.path", f"{out} is a folder; give a file name such as report.html")
    if not out.parent.is_dir():
        raise _field_error(study, "report.path", f"the folder {out.parent} does not exist")
    plan.report = out
    if r.figures is not None:
        fig = study.resolve_path(r.figures)
        if fig.exists() and not fig.is_dir():
            raise _field_error(study, "report.figures", f"{fig} is a file; give a folder")
        if not fig.parent.is_dir():
            raise _field_error(study, "report.figures", f"the folder {fig.parent} does not exist")
        plan.figures = fig


# -- state -------------------------------------------------------------------------------------
def _state(st, study: str, phase: str) -> tuple[str, dict] | None:
    st.con.execute(STATE_SCHEMA)
    row = st.con.execute("SELECT inputs, detail FROM study_phases WHERE study = ? AND phase = ?", [study, phase]).fetchone()
    return None if row is None else (row[0], json.loads(row[1] or "{}"))


def _set_state(st, study: str, phase: str, inputs: str, detail: dict) -> None:
    st.con.execute(STATE_SCHEMA)
    st.con.execute(
        "INSERT OR REPLACE INTO study_phases VALUES (?, ?, ?, ?, ?)", [study, phase, inputs, json.dumps(detail), time.time()]
    )


def measured_data_digest(st, study: str) -> str:
    """A digest of everything :func:`monoculture.measure.measure` reads for ``study``: each
    answered generation (key, model, prompt, sample, text), its prompt's group and suite (the
    resampling clusters), and the attributes of the models (groups, base models)."""
    df = st.generations(study)
    h = hashlib.sha256()
    cols = ["key", "model", "prompt_key", "sample_index", "group_id", "suite"]
    for row, text in zip(df[cols].itertuples(index=False, name=None), df["text"]):
        h.update(
            json.dumps([*(None if v != v else v for v in row[:3]), int(row[3]), *row[4:], text_hash(text)], default=str).encode()
        )
    attrs = st.model_attributes()
    h.update(json.dumps({m: attrs.get(m) for m in sorted(set(df["model"]))}, sort_keys=True, default=str).encode())
    return f"{len(df)}:{h.hexdigest()}"


def _probe_digest(st) -> str:
    """A digest of the probe tables the report reads (content, not write times: the ``sample``
    method rewrites its distributions on every run)."""
    from monoculture.probes import store as pstore

    if not pstore.has_tables(st):
        return "none"
    pstore.ensure_schema(st)
    parts = []
    for sql in (
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', key, model, status, CAST(probs AS VARCHAR)), ',' ORDER BY key), '')) FROM probe_distributions",
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', group_id, country, CAST(probs AS VARCHAR)), ',' ORDER BY group_id, country), '')) FROM probe_countries",
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', study, model), ',' ORDER BY study, model), '')) FROM probe_study_models",
    ):
        parts.append(st.con.execute(sql).fetchone())
    return digest(parts)


def _file_sha(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version() -> str:
    from monoculture import __version__

    return __version__


# -- running -----------------------------------------------------------------------------------
def run_plan(plan: StudyPlan, *, console: Console, err: Console, show_progress: bool = True) -> StudyOutcome:
    """Run the plan's phases in order. Failed generations do not stop the later phases (they
    measure what is there, as ``run`` then ``measure`` would); the caller exits 3 for them."""
    out = StudyOutcome()
    n = len(plan.phases)
    t_all = time.perf_counter()
    for i, phase in enumerate(plan.phases, 1):
        err.print(styled("[bold]{}[/bold] {}", f"[{i}/{n}] {phase}", _describe(plan, phase)))
        t0 = time.perf_counter()
        did, line = _RUNNERS[phase](plan, out, console, err, show_progress)
        po = PhaseOutcome(phase, time.perf_counter() - t0, did, line)
        out.phases.append(po)
        console.print(styled("[bold]{}[/bold]: {} ({})", phase, line, f"{po.seconds:.1f} s"))
    timing = ", ".join(f"{p.phase} {p.seconds:.1f} s" for p in out.phases)
    console.print(
        styled("study [bold]{}[/bold]: {} -> {}", plan.study.name, f"{time.perf_counter() - t_all:.1f} s ({timing})", plan.store)
    )
    skipped = [p for p in plan.named if p not in plan.phases]
    if skipped:
        console.print(f"not run this time: {', '.join(skipped)}", highlight=False)
    if out.failed:
        err.print(
            styled(
                "[yellow]{} generations, probe requests or loop steps failed[/yellow]; they are stored, and the same command retries them",
                out.failed,
            )
        )
    return out


def _describe(plan: StudyPlan, phase: str) -> str:
    s = plan.study
    if phase == "run":
        return f"{len(s.models)} models, {', '.join(r.name for r in s.suites)}, k = {s.samples}"
    if phase == "probe":
        p = s.probes
        assert p is not None
        return f"suite {p.suite}, method {p.method}" + (f", languages {','.join(p.languages)}" if p.languages else "")
    if phase == "loops":
        lp = s.loops
        assert lp is not None
        text = f"tasks {', '.join(t.name for t in lp.tasks)}, {lp.steps} steps, {lp.chains} chains per seed, mix {lp.mix}"
        return (text if lp.tasks else "no text chains") + (", and images" if lp.images is not None else "")
    if phase == "measure":
        m = s.measure
        assert m is not None
        return f"embedder {m.embedder or 'default'}, B = {m.n_boot}"
    return f"-> {plan.report}"


def _run_collect(plan: StudyPlan, out: StudyOutcome, console, err, show_progress) -> tuple[bool, str]:
    from monoculture.collect import prepare_run, run_study
    from monoculture.store import Store

    prepared = plan.prepared or prepare_run(plan.study)
    with Store(plan.store) as st:
        stats = run_study(plan.study, st, console=err, show_progress=show_progress, prepared=prepared)
    out.generated += stats.generated
    out.failed += stats.failed
    line = f"{stats.generated} generated, {stats.skipped} already in the store, {stats.failed} failed"
    return bool(stats.generated or stats.failed), line + (" (rerun to retry)" if stats.failed else "")


def _run_probe(plan: StudyPlan, out: StudyOutcome, console, err, show_progress) -> tuple[bool, str]:
    from monoculture.probes import store as pstore
    from monoculture.probes.runner import run_probe
    from monoculture.store import Store

    p = plan.study.probes
    assert p is not None
    if plan.probe_items is None:
        _check_probes(plan)
    with Store(plan.store) as st:
        pstore.ensure_schema(st)
        if plan.countries is not None:
            c = plan.countries
            pstore.write_countries(st, c.dists, c.dropped, ",".join(c.sources))
        stats = run_probe(
            plan.study,
            st,
            suite=p.suite,
            method=p.method,
            steer=p.steer,
            languages=p.languages,
            samples=p.samples,
            console=err,
            show_progress=show_progress,
        )
    new = sum(m.new for m in stats.per_model.values())
    already = sum(m.already for m in stats.per_model.values())
    out.probed += new
    out.failed += stats.errors
    unit = "answers" if p.method == "sample" else "distributions"
    return bool(new or stats.errors), f"{new} new {unit}, {already} already in the store, {stats.errors} failed"


def _run_loops(plan: StudyPlan, out: StudyOutcome, console, err, show_progress) -> tuple[bool, str]:
    """Every missing step of the loops (a rerun with all chains complete asks no backend)."""
    from monoculture.loops.runner import prepare_loops, run_loops
    from monoculture.store import Store

    prepared = plan.loops or prepare_loops(plan.study)
    with Store(plan.store) as st:
        res = run_loops(plan.study, st, console=err, show_progress=show_progress, prepared=prepared)
        summarised, summary = _summarise_loops(plan, st, err)
    out.looped += res.generated
    out.failed += res.all_failed
    images = f"; images: {res.images.describe()}" if res.images is not None and hasattr(res.images, "describe") else ""
    did_images = res.images is not None and bool(getattr(res.images, "generated", 0) or getattr(res.images, "failed", 0))
    if not res.generated and not res.failed and not did_images:
        return summarised, f"all {res.chains} chains complete: {res.skipped} steps already in the store" + images + summary
    line = f"{res.generated} steps generated, {res.skipped} already in the store, {res.failed} failed"
    line += (" (rerun to retry)" if res.failed else "") + f"; {res.finished} of {res.chains} chains complete"
    return True, line + images + summary


def _summarise_loops(plan: StudyPlan, st, err) -> tuple[bool, str]:
    """The chains' summary with the study's ``loops: summary:`` settings, computed and kept in
    the store (loop_summaries) unless it holds one for these chains already, so the report (and
    ``monoculture loop summary STUDY.yaml``) reuse it. (whether it was computed, a line's end).
    A summary that cannot be computed is a note: the chains stay, and the report says why."""
    from monoculture.loops.summary import stored_loop_summary
    from monoculture.report.loops import has_chains

    lp = plan.study.loops
    assert lp is not None
    name = plan.study.name
    if not has_chains(st, name):
        return False, ""
    t0 = time.perf_counter()
    try:
        _, reused = stored_loop_summary(st, name, **lp.summary.settings())
    except Exception as e:  # noqa: BLE001 - the chains are stored; the report names the failure again
        why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        err.print(f"note: the loop summary was not computed: {why}", style="dim", highlight=False, soft_wrap=True)
        return False, "; summary not computed (see the note)"
    if reused:
        return False, "; summary unchanged (stored)"
    return True, f"; summary computed and stored ({time.perf_counter() - t0:.1f} s)"


def _measure_request(plan: StudyPlan) -> dict:
    m = plan.study.measure
    assert m is not None
    return {"study": plan.study.name, **m.model_dump(mode="json"), "version": _version()}


def _run_measure(plan: StudyPlan, out: StudyOutcome, console, err, show_progress) -> tuple[bool, str]:
    from monoculture.measure import measure
    from monoculture.results import load_results
    from monoculture.store import Store
    from monoculture.summary import print_summary

    m = plan.study.measure
    assert m is not None
    name = plan.study.name
    with Store(plan.store) as st:
        inputs = digest({"request": _measure_request(plan), "data": measured_data_digest(st, name)})
        state = _state(st, name, "measure")
        label = state[1].get("label") if state and state[0] == inputs else None
        if label and st.con.execute("SELECT 1 FROM measure_runs WHERE label = ?", [label]).fetchone():
            res = load_results(st, label)
            line = f"unchanged since the last measurement (same settings, same data): reused {label}"
            did = False
        else:
            res = measure(
                st,
                study=name,
                embedder=m.embedder,
                groups=m.groups,
                what_if_removed=m.what_if_removed,
                reference=m.reference,
                raw=m.raw,
                n_boot=m.n_boot,
                seed=m.seed,
                tau=m.tau,
                console=err,
                show_progress=show_progress,
            )
            _set_state(st, name, "measure", inputs, {"label": res.label})
            out.embedded += res.newly_embedded
            out.measured = True
            line = f"{res.newly_embedded} texts newly embedded; stored as {res.label}"
            did = True
    out.label = res.label
    print_summary(res, console)
    return did, line


def _run_report(plan: StudyPlan, out: StudyOutcome, console, err, show_progress) -> tuple[bool, str]:
    from monoculture.loops.summary import summary_digest, summary_settings
    from monoculture.report.loops import loops_only
    from monoculture.results import resolve_label
    from monoculture.store import Store, scalar

    r = plan.study.report
    if plan.report is None:
        _check_report(plan)
    assert r is not None and plan.report is not None
    name = plan.study.name
    loop_settings = plan.study.loops.summary.settings() if plan.study.loops is not None else None
    with Store(plan.store) as st:
        label = out.label
        if label is None:  # measure did not run in this invocation: the one it last made, else the latest
            state = _state(st, name, "measure")
            label = state[1].get("label") if state else None
            if not label or not st.con.execute("SELECT 1 FROM measure_runs WHERE label = ?", [label]).fetchone():
                # a study that ran loops and measured nothing gets the report of its loops alone
                label = None if loops_only(st, name) else resolve_label(st, None, name)
        created = scalar(st.con, "SELECT created_at FROM measure_runs WHERE label = ?", [label]) if label else None
        # the key of the summary the Loops section draws (its settings, the chains, the scorers' versions)
        canon = summary_settings(**(loop_settings or {}))
        inputs = digest(
            {
                "label": label,
                "measured_at": created,
                "probes": _probe_digest(st),
                "loops": summary_digest(st, name, canon) if canon is not None else None,
                "options": r.model_dump(mode="json"),
                "path": str(plan.report),
                "figures": str(plan.figures) if plan.figures else None,
                "version": _version(),
            }
        )
        state = _state(st, name, "report")
    current = (
        state is not None
        and state[0] == inputs
        and _file_sha(plan.report) == state[1].get("sha256")
        and (plan.figures is None or plan.figures.is_dir())
    )
    if current:
        return False, f"unchanged since it was written: kept {plan.report}"
    from monoculture.report.build import build_report  # plotting libraries: imported only to write

    # the report reads the store on a connection of its own, so ours is closed while it writes
    info = build_report(
        plan.store,
        plan.report,
        label=label,
        max_prompts=r.max_prompts,
        export_figures=plan.figures,
        study=name,
        loop_settings=loop_settings,
    )
    with Store(plan.store) as st:
        _set_state(st, name, "report", inputs, {"label": label, "path": str(plan.report), "sha256": _file_sha(plan.report)})
    for note in info.notes:
        err.print(f"note: {note}", style="dim", highlight=False, soft_wrap=True)
    out.reported = True
    extra = f"; {len(info.exported)} figure files in {plan.figures}" if info.exported else ""
    return True, f"wrote {info.path} ({info.bytes / 1e6:.1f} MB; {len(info.figures)} figures){extra}"


_RUNNERS = {"run": _run_collect, "probe": _run_probe, "loops": _run_loops, "measure": _run_measure, "report": _run_report}


# -- --check -----------------------------------------------------------------------------------
def print_check(plan: StudyPlan, console: Console) -> None:
    """What ``--check`` found: the study as it would run, and notes for this machine."""
    s = plan.study
    prompts = len(plan.prepared.prompts) if plan.prepared else 0
    size = f"{len(s.models)} models x {prompts} prompts x k = {s.samples}: {len(s.models) * prompts * s.samples} generations"
    console.print(
        styled("[bold]{}[/bold]: valid. {}", s.path, size if s.suites else f"{len(s.models)} models, loops only (no suites)")
    )
    if s.probes is not None:
        items = plan.probe_items or []
        langs = sorted({it.language for it in items})
        console.print(
            f"probes: suite {s.probes.suite}, method {s.probes.method}, {len(items)} items in {len(langs)} languages ({', '.join(langs)})"
            + (f", steered towards {', '.join(s.probes.steer)}" if s.probes.steer else ""),
            highlight=False,
        )
    if plan.loops is not None:
        from monoculture.loops.runner import describe_plan

        console.print(f"loops: {describe_plan(plan.loops)}", highlight=False)
    if s.measure is not None:
        m = s.measure
        console.print(
            f"measure: embedder {m.embedder or 'default'}, groups {', '.join(m.groups) if m.groups else 'default'}, "
            f"B = {m.n_boot}, seed {m.seed}"
            + (f", what if removed: {', '.join(m.what_if_removed)}" if m.what_if_removed else "")
            + (f", reference {m.reference}" if m.reference else ""),
            highlight=False,
        )
    if plan.report is not None:
        console.print(f"report: -> {plan.report}", highlight=False)
    console.print(f"phases: {', '.join(plan.named)}; store: {plan.store} (nothing was run or written)", highlight=False)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False)
