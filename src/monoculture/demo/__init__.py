"""``monoculture demo``: the whole job on real data shipped in the package, offline, in a minute.

A new user should see the tool answer its question before installing any model. The package
carries two small, permissively licensed sets of real model outputs (``data/``, see its NOTICE):

* **arena** (Arena-Hard ``arena-bench-v1``): 13 models, one answer each to 300 hard prompts. The
  question is across models: how many distinct voices, how alike, what the field would lose
  without each model and each family, organisation or country (against random groups of the
  same size).
* **noveltybench** (NoveltyBench ``sample_data``): GPT-4o sampled ten times four ways, and eight
  crowd answers, to 100 prompts. The question is within a source: how many distinct answers
  GPT-4o gives when asked again, against humans (the study's reference).

These are two studies in one store (``DIR/store.duckdb``), measured separately because they ask
different questions of different prompts; each has its own report page (``DIR/report.html`` for
arena, ``DIR/noveltybench.html``). The demo goes through the same public steps a user would
(importers, ``attributes``, ``measure``, ``report``), so it also checks that they fit together.

The embedder is ``tfidf``: no model to download. Its vectors are fitted to each study's corpus,
which is fine for a first look (the validation figures in docs/validation.md compare it with neural
embedders). ``TAU`` is the threshold for "the same answer", calibrated for tfidf on
NoveltyBench's own judged partitions (docs/measure.md, "Distinct answers and tau"): an in-sample figure,
stated as such in the output.

A rerun reuses what the store holds: nothing is imported, measured or rendered again unless the
shipped data, the demo's settings or the package version changed, or a report file is missing.
"""

from __future__ import annotations

import hashlib
import lzma
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from monoculture.errors import UserError

DEFAULT_DIR = Path("monoculture-demo")
STORE_NAME = "store.duckdb"
EMBEDDER = "tfidf"
TAU = 0.70  # tfidf's calibrated tau on NoveltyBench's labelled pairs (docs/measure.md); in-sample
N_BOOT = 1000
SEED = 0
# Bump when what the demo stores changes meaning (a new part, other attributes semantics), so
# that old demo stores are refreshed instead of reused.
DEMO_VERSION = 1


@dataclass(frozen=True)
class Part:
    """One shipped data set and the study it becomes."""

    study: str
    fmt: str  # the importer (monoculture.importers.FORMATS)
    folder: str  # under data/, what the importer reads
    report: str  # file name of its report page under DIR
    reference: str | None = None
    title: str = ""


PARTS = (
    Part(
        "arena",
        "arena-hard",
        "arena_bench_v1",
        "report.html",
        title="Arena-Hard (arena-bench-v1): 13 models, one answer each to 300 hard prompts",
    ),
    Part(
        "noveltybench",
        "noveltybench",
        "noveltybench/sample_data",
        "noveltybench.html",
        reference="humans",
        title="NoveltyBench: GPT-4o sampled ten times four ways, and crowd answers, to 100 prompts",
    ),
)


@dataclass
class PartResult:
    part: Part
    measured: Any  # monoculture.measure.Measured
    report: Path
    imported: bool
    measured_now: bool
    reported_now: bool
    measured_at: float  # the stored measurement's created_at: a report older than it is stale


@dataclass
class DemoResult:
    """What ``run_demo`` did and found. ``figures`` holds every number the headline prints,
    by name, so a test can check them without parsing text."""

    out_dir: Path
    store: Path
    parts: dict[str, PartResult]
    figures: dict[str, float] = field(default_factory=dict)
    judged: dict[str, float] = field(default_factory=dict)  # NoveltyBench's own classes per source
    seconds: float = 0.0


def data_root():
    """The shipped data folder (a Traversable: inside a wheel, zip or folder alike)."""
    return resources.files("monoculture.demo") / "data"


def _data_files(folder: str) -> list:
    """The shipped files of one part, sorted by name (an order the fingerprint can rely on)."""
    root = data_root()
    node = root
    for piece in folder.split("/"):
        node = node / piece
    out = []
    stack = [node]
    while stack:
        n = stack.pop()
        for c in n.iterdir():
            (stack.append(c) if c.is_dir() else out.append(c))
    return sorted(out, key=lambda t: str(t))


def fingerprint(part: Part) -> str:
    """A hash of everything that decides what the demo stores for ``part``: its shipped files,
    the attributes file, the demo's settings and the package version. A store whose study
    carries the same fingerprint holds exactly what a fresh run would import."""
    from monoculture import __version__

    h = hashlib.sha256()
    h.update(repr((DEMO_VERSION, __version__, part, EMBEDDER, TAU, N_BOOT, SEED)).encode())
    for f in [*_data_files(part.folder), data_root() / "attributes.yaml"]:
        data = f.read_bytes()
        h.update(f.name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def _unpack(part: Part, into: Path) -> Path:
    """Decompress ``part``'s files under ``into``, keeping their names (the importers name
    models after files). Returns the folder the importer reads."""
    base = into / part.folder
    src_root = data_root()
    for f in _data_files(part.folder):
        rel = Path(str(f)).relative_to(Path(str(src_root)))
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.name.endswith(".xz"):
            target.with_suffix("").write_bytes(lzma.decompress(f.read_bytes()))
        else:
            target.write_bytes(f.read_bytes())
    return base


def _study_state(st, study: str) -> tuple[dict, float] | None:
    """(spec, updated_at) of a registered study, or None."""
    import json

    row = st.con.execute("SELECT spec, updated_at FROM studies WHERE name = ?", [study]).fetchone()
    if row is None:
        return None
    spec = row[0]
    try:
        spec = json.loads(spec) if isinstance(spec, str) else (spec or {})
    except json.JSONDecodeError:
        spec = {}
    return spec, float(row[1] or 0.0)


def _is_current(st, part: Part, fp: str) -> bool:
    """Whether the store already holds this part as a fresh import would leave it."""
    state = _study_state(st, part.study)
    if state is None:
        return False
    demo = state[0].get("demo") or {}
    if demo.get("fingerprint") != fp:
        return False
    # a generation removed since (``monoculture rm``) means the study is no longer whole
    return len(st.generations(part.study)) == demo.get("generations")


def _import_part(st, part: Part, fp: str, tmp: Path) -> None:
    """Import one part with the public importer, set the attributes, register its study."""
    from monoculture.attributes import apply_attributes
    from monoculture.importers import import_records, reader
    from monoculture.suites import prompt_key

    records = reader(part.fmt)(_unpack(part, tmp))
    import_records(st, records, source=part.fmt)
    models = sorted({r.model for r in records})
    prompt_keys = list(dict.fromkeys(prompt_key((("user", r.prompt),)) for r in records))
    with resources.as_file(data_root() / "attributes.yaml") as attrs_file:
        wanted = _attributes_for(attrs_file, models)
    # the shipped file covers both parts; apply_attributes refuses models not yet in the store
    mine = tmp / f"{part.study}-attributes.yaml"
    mine.write_text(yaml.safe_dump(wanted, sort_keys=True, allow_unicode=True), encoding="utf-8")
    apply_attributes(st, file=mine)
    spec = {
        "demo": {
            "fingerprint": fp,
            "generations": len(records),
            "data": f"monoculture/demo/data/{part.folder}",
            "format": part.fmt,
        },
        "suites": [{"name": part.fmt}],
    }
    st.register_study(part.study, None, spec, models, prompt_keys)


def _attributes_for(path: Path, models: list[str]) -> dict[str, dict]:
    """The attributes file's entries for ``models`` (validated by the attributes module);
    a model without an entry is a packaging mistake, named here rather than measured bare."""
    from monoculture.attributes import read_attributes_file

    attrs = read_attributes_file(path)
    missing = [m for m in models if m not in attrs]
    if missing:
        raise RuntimeError(f"demo attributes.yaml has no entry for {', '.join(missing)}")
    return {m: attrs[m] for m in models}


def _settings(part: Part) -> dict[str, Any]:
    return {
        "study": part.study,
        "calibrated": True,
        "n_boot": N_BOOT,
        "seed": SEED,
        "tau": TAU,
        "reference": part.reference,
        "what_if_removed": [],
        "center_from": None,
    }


def _stored_run(st, part: Part, since: float) -> tuple[str, float] | None:
    """(label, created_at) of a stored measurement of ``part`` with the demo's settings, made
    after the study's last import by this package version; None if there is none."""
    from monoculture import __version__
    from monoculture.results import list_runs

    if not st.con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'measure_runs'").fetchone():
        return None
    want = _settings(part)
    for r in list_runs(st, part.study).itertuples():
        s = r.settings
        if (
            r.created_at >= since
            and str(s.get("embedder", "")).split(":", 1)[0] == EMBEDDER
            and s.get("monoculture_version") == __version__
            and all(s.get(k) == v for k, v in want.items())
        ):
            return r.label, float(r.created_at)
    return None


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("exists and is not a folder; give a folder for the demo's store and reports", where=str(out_dir))
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError("is a file, where the demo's folder should go inside a folder", where=str(parent))
    store = out_dir / STORE_NAME
    if store.exists() and store.is_dir():
        raise UserError("is a folder; the demo keeps its store in this file", where=str(store))


def run_demo(
    out_dir: str | Path = DEFAULT_DIR, *, console: Console | None = None, err: Console | None = None, show_progress: bool = True
) -> DemoResult:
    """Import, measure and report both shipped studies into ``out_dir``, reusing whatever the
    store there already holds, and print the headline to ``console``."""
    from monoculture.demo.headline import headline, judged_classes, print_headline
    from monoculture.measure import measure
    from monoculture.report.build import build_report
    from monoculture.results import load_results
    from monoculture.store import Store, scalar

    t0 = time.perf_counter()
    console = console or Console(markup=False, highlight=False)
    err = err or Console(stderr=True, markup=False, highlight=False)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    store_path = out_dir / STORE_NAME
    parts: dict[str, PartResult] = {}
    with Store(store_path) as st:
        todo = [(p, fingerprint(p)) for p in PARTS]
        todo = [(p, fp) for p, fp in todo if not _is_current(st, p, fp)]
        if todo:
            with tempfile.TemporaryDirectory(prefix="monoculture-demo-") as tmp:
                for p, fp in todo:
                    if show_progress:
                        err.print(f"importing {p.study} ({p.fmt})")
                    _import_part(st, p, fp, Path(tmp))
        imported = {p.study for p, _ in todo}
        for p in PARTS:
            state = _study_state(st, p.study)
            assert state is not None, f"study {p.study!r} was imported above or found current"
            since = state[1]
            hit = _stored_run(st, p, since)
            if hit is None:
                if show_progress:
                    err.print(f"measuring {p.study} (embedder {EMBEDDER}, {N_BOOT} bootstrap resamples)")
                m = measure(
                    st,
                    study=p.study,
                    embedder=EMBEDDER,
                    reference=p.reference,
                    tau=TAU,
                    n_boot=N_BOOT,
                    seed=SEED,
                    console=err,
                    show_progress=show_progress,
                )
                created = scalar(st.con, "SELECT created_at FROM measure_runs WHERE label = ?", [m.label])
            else:
                m = load_results(st, hit[0])
                created = hit[1]
            parts[p.study] = PartResult(p, m, out_dir / p.report, p.study in imported, hit is None, False, created)
        judged = judged_classes(st, parts["noveltybench"].measured.summary.get("models") or [])
    for p in PARTS:
        r = parts[p.study]
        if r.measured_now or not r.report.is_file() or r.report.stat().st_mtime < r.measured_at:
            if show_progress:
                err.print(f"writing {r.report}")
            build_report(store_path, r.report, label=r.measured.label, study=p.study, title=f"monoculture demo: {p.title}")
            r.reported_now = True
    res = DemoResult(out_dir, store_path, parts, judged=judged)
    res.figures = headline(parts["arena"].measured, parts["noveltybench"].measured, judged)
    res.seconds = time.perf_counter() - t0
    print_headline(res, console)
    return res
