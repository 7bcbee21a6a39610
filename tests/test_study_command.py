"""``monoculture study``: every phase of a study file, each resumable; a second invocation does
no work; a SIGKILL anywhere and a rerun end where an uninterrupted run ends; bad sections fail
before anything runs; the seed-families studies validate without loading a model."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from monoculture.cli import app
from monoculture.results import load_results
from monoculture.store import Store

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ["Name a colour.", "Say hello to a friend.", "Count to three.", "Name a fruit you like."]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """Two tiny local transformers models, four prompts (k = 2), a cut of the values suite."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from monoculture.suites import suite_path
    from tiny_models import cached_tiny_model

    d = tmp_path_factory.mktemp("study")
    qwen = cached_tiny_model("qwen2", 1, cache_dir=d / "models")
    llama = cached_tiny_model("llama", 2, cache_dir=d / "models")
    values = [json.loads(line) for line in suite_path("values").read_text(encoding="utf-8").splitlines() if line.strip()]
    cut = [r for r in values if r["group"] in ("val-01", "val-06") and r["language"] in ("en", "zh")]
    (d / "values-small.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in cut), encoding="utf-8")
    (d / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n" for i, t in enumerate(PROMPTS)))
    models = [
        {"name": "tiny-qwen", "path": qwen, "family": "qwen", "country": "CN"},
        {"name": "tiny-llama", "path": llama, "family": "llama", "country": "US"},
    ]
    (d / "models.json").write_text(json.dumps([{**m, "path": str(m["path"])} for m in models]))
    return d


def write_study(d: Path, name: str, **changes) -> Path:
    models = json.loads((d / "models.json").read_text())
    spec = {
        "name": "tiny",
        "store": f"{name}.duckdb",
        "models": [
            {
                "name": m["name"],
                "backend": "transformers",
                "model": m["path"],
                "params": {"batch_size": 8, "n_threads": 1},
                "attributes": {"family": m["family"], "country": m["country"]},
            }
            for m in models
        ],
        "suites": [str(d / "prompts.jsonl")],
        "samples": 2,
        "sampling": {"temperature": 0.9, "max_tokens": 8, "seed": 5},
        "probes": {"suite": str(d / "values-small.jsonl")},
        "measure": {"embedder": "tfidf", "groups": ["family"], "what_if_removed": ["qwen"], "B": 50},
        "report": {"path": f"{name}.html", "max_prompts": 4},
    }
    for k, v in changes.items():
        if v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def final_data(store: Path) -> tuple[dict, dict, list, list]:
    """What the report is made of: the stored measurement (summary less its timing, tables),
    the generations and the probe distributions."""
    with Store(store, read_only=True) as st:
        m = load_results(st)
        summary = json.loads(json.dumps(m.summary))
        summary["settings"].pop("seconds", None)
        tables = {k: v.to_dict(orient="split") for k, v in m.tables.items()}
        gens = sorted(st.con.execute("SELECT key, text, error FROM generations").fetchall())
        dists = sorted(st.con.execute("SELECT key, status, CAST(probs AS VARCHAR) FROM probe_distributions").fetchall())
        runs = st.con.execute("SELECT count(*) FROM measure_runs").fetchone()[0]
    assert runs == 1
    return summary, tables, gens, dists


def assert_close(a, b, path="") -> None:
    """Equal, numbers to 1e-9 relative (a BLAS sum may round differently in another process)."""
    if isinstance(a, float) and isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.fixture(scope="module")
def reference(study_dir) -> dict:
    """One uninterrupted run of every phase, then a second invocation."""
    study = write_study(study_dir, "ref")
    first = invoke("study", str(study), "-q")
    assert first.exit_code == 0, first.output
    report = study_dir / "ref.html"
    stamp = (report.stat().st_mtime_ns, report.read_bytes())
    data = final_data(study_dir / "ref.duckdb")
    return {"study": study, "first": first.stdout, "report": report, "stamp": stamp, "data": data}


def test_every_phase_runs_in_order(reference):
    out = reference["first"]
    lines = [next(line for line in out.splitlines() if line.startswith(f"{p}:")) for p in ("run", "probe", "measure", "report")]
    assert lines[0].startswith("run: 16 generated, 0 already in the store, 0 failed")  # 2 models x 4 prompts x k = 2
    assert lines[1].startswith("probe: 8 new distributions")  # 2 models x 2 questions x 2 languages
    assert lines[2].startswith("measure: 16 texts newly embedded; stored as tiny|tfidf")
    assert lines[3].startswith(f"report: wrote {reference['report']}")
    assert [out.index(line) for line in lines] == sorted(out.index(line) for line in lines)
    summary, tables, gens, dists = reference["data"]
    assert len(gens) == 16 and all(e is None for _, _, e in gens) and len(dists) == 8
    assert summary["settings"]["what_if_removed"] == ["qwen"] and summary["settings"]["n_boot"] == 50
    assert "per_model" in tables and "<html" in reference["report"].read_text()[:500].lower()


def test_second_run_generates_embeds_and_measures_nothing(reference, monkeypatch):
    import monoculture.collect
    import monoculture.embed
    import monoculture.metrics.pipeline
    import monoculture.probes.runner

    def forbidden(what):
        def fail(*a, **k):
            raise AssertionError(f"a second invocation must not {what}")

        return fail

    monkeypatch.setattr(monoculture.collect, "create_backend", forbidden("load a model"))
    monkeypatch.setattr(monoculture.probes.runner, "create_backend", forbidden("load a model to probe"))
    monkeypatch.setattr(monoculture.embed.TfidfEmbedder, "embed", forbidden("embed"))
    monkeypatch.setattr(monoculture.metrics.pipeline, "measure_all", forbidden("measure"))
    store = reference["study"].parent / "ref.duckdb"
    with Store(store, read_only=True) as st:
        before = st.con.execute("SELECT label, created_at FROM measure_runs").fetchall()
    again = invoke("study", str(reference["study"]), "-q")
    assert again.exit_code == 0, again.output
    assert "run: 0 generated, 16 already in the store, 0 failed" in again.output
    assert "probe: 0 new distributions, 8 already in the store, 0 failed" in again.output
    assert "measure: unchanged since the last measurement" in again.output
    assert "report: unchanged since it was written" in again.output
    with Store(store, read_only=True) as st:
        assert st.con.execute("SELECT label, created_at FROM measure_runs").fetchall() == before
    report = reference["report"]
    assert (report.stat().st_mtime_ns, report.read_bytes()) == reference["stamp"]  # not even rewritten
    assert_close(final_data(store), reference["data"])


def test_the_report_is_rewritten_when_something_changed(reference, study_dir):
    shutil.copy(study_dir / "ref.duckdb", study_dir / "changed.duckdb")
    study = write_study(study_dir, "changed")
    r = invoke("study", str(study), "-q", "--skip", "run", "--skip", "probe")
    assert r.exit_code == 0, r.output
    assert "measure: unchanged since the last measurement" in r.output  # same settings, same data: reused
    assert "report: wrote" in r.output  # a new report file: written once
    r = invoke("study", str(study), "-q", "--only", "report")
    assert "report: unchanged" in r.output
    (study_dir / "changed.html").write_text("edited by hand")
    r = invoke("study", str(study), "-q", "--only", "report")
    assert "report: wrote" in r.output and "<html" in (study_dir / "changed.html").read_text()[:500].lower()
    # other settings: a new measurement, then a new report
    study = write_study(study_dir, "changed", measure={"embedder": "tfidf", "groups": ["family"], "B": 60})
    r = invoke("study", str(study), "-q", "--only", "measure", "--only", "report")
    assert "measure: 16 texts newly embedded" not in r.output  # the vectors are cached
    assert "measure: 0 texts newly embedded" in r.output and "report: wrote" in r.output
    with Store(study_dir / "changed.duckdb", read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM measure_runs").fetchone()[0] == 2


def _cli(study: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "monoculture.cli", "study", str(study), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_sigkill_in_each_phase_then_rerun_matches_an_uninterrupted_run(reference, study_dir):
    """Kill `monoculture study` once in each phase (at a random moment after the phase starts,
    resuming each time); the final run's measurement, generations and probes equal the
    uninterrupted run's."""
    rng = random.Random(3)
    study = write_study(study_dir, "killed")
    kills = []
    for phase in ("run", "probe", "measure", "report"):
        p = _cli(study)
        started = threading.Event()

        def watch(p=p, started=started, phase=phase):
            for line in p.stderr:
                if f"] {phase} " in line:
                    started.set()
            started.set()  # the process ended

        threading.Thread(target=watch, daemon=True).start()
        started.wait(timeout=120)
        time.sleep(rng.uniform(0.0, 0.4))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills.append(phase)
        p.wait(timeout=60)
    assert len(kills) >= 3, f"the runs finished before they could be killed ({kills}): the test would prove nothing"
    p = _cli(study)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 0, err
    assert_close(final_data(study_dir / "killed.duckdb"), reference["data"])
    assert (study_dir / "killed.html").is_file()


# -- bad input: exit 2 before anything is written ---------------------------------------------
def _bad_study(tmp_path: Path, **section) -> Path:
    spec = {
        "name": "s",
        "models": [
            {
                "name": "a",
                "backend": "openai",
                "model": "m",
                "params": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None},
            },
            {
                "name": "b",
                "backend": "openai",
                "model": "n",
                "params": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None},
            },
        ],
        "suites": [{"name": "open-ended", "limit": 2}],
        "sampling": {"max_tokens": 8},
        "measure": {"embedder": "tfidf"},
        "report": {"path": "report.html"},
        **section,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


BAD = {
    "unknown embedder": ({"measure": {"embedder": "fancy-embedder"}}, "field 'measure.embedder'", "unknown embedder"),
    "tfidf dimensions": ({"measure": {"embedder": "tfidf:many"}}, "field 'measure.embedder'", "whole number"),
    "report folder": ({"report": {"path": "no/such/folder/report.html"}}, "field 'report.path'", "does not exist"),
    "probe suite": ({"probes": {"suite": "no-such-suite"}}, "field 'probes.suite'", "unknown suite"),
    "probe suite file": ({"probes": {"suite": "missing.jsonl"}}, "field 'probes.suite'", "not found"),
    "probe method": ({"probes": {"method": "vibes"}}, "field 'probes.method'", "unknown method"),
    "probe countries": ({"probes": {"countries": "nowhere.csv"}}, "field 'probes.countries'", "no such file"),
    "unknown group": ({"measure": {"groups": ["family"]}}, "field 'measure.groups'", "attribute 'family'"),
    "what if removed": ({"measure": {"what_if_removed": ["qwen"]}}, "field 'measure.what_if_removed'", "'qwen'"),
    "reference": ({"measure": {"reference": "humans"}}, "field 'measure.reference'", "not a model"),
    "unknown key": ({"measure": {"embeder": "tfidf"}}, "field 'measure.embeder'", "Extra inputs"),
    "loops": ({"loops": {"rounds": 3}}, "field 'loops.rounds'", "Extra inputs"),
    "loops seeds": ({"loops": {"seeds": "missing.jsonl"}}, "field 'loops.seeds'", "seed file not found"),
    "loops mix": ({"loops": {"mix": "both", "models": ["qwen"]}}, "field 'loops.models'", "not a model of the study"),
}


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
@pytest.mark.parametrize("case", list(BAD))
def test_bad_sections_fail_before_anything_runs(tmp_path, case, check):
    section, field, why = BAD[case]
    study = _bad_study(tmp_path, **section)
    r = invoke("study", str(study), *(["--check"] if check else []))
    assert r.exit_code == 2, r.output
    assert field in r.output and why in r.output, r.output
    assert str(study) in r.output  # names the file
    assert not list(tmp_path.glob("*.duckdb*")) and not (tmp_path / "report.html").exists()


def test_bad_phase_names_and_phases_the_file_lacks(tmp_path):
    study = _bad_study(tmp_path)
    r = invoke("study", str(study), "--only", "vibes")
    assert r.exit_code == 2 and "--only 'vibes': not a phase" in r.output
    r = invoke("study", str(study), "--only", "loops")
    assert r.exit_code == 2 and "no loops: section" in r.output
    r = invoke("study", str(study), "--only", "probe")
    assert r.exit_code == 2 and "no probes: section" in r.output
    r = invoke("study", str(study), "--only", "measure")  # nothing collected yet
    assert r.exit_code == 2 and "no store at" in r.output
    assert not list(tmp_path.glob("*.duckdb*"))


# -- the seed's families ---------------------------------------------------------------------
FAMILIES = {"qwen", "llama", "mistral", "jais", "phi", "deepseek", "gemma", "falcon", "olmo", "smollm"}
LANGS7 = {"en", "zh", "ar", "hi", "es", "ru", "sw"}


@pytest.mark.parametrize("name,backend", [("seed-families", "vllm"), ("seed-families-laptop", "transformers")])
def test_seed_families_validate_without_loading_a_model(name, backend, monkeypatch, tmp_path):
    import monoculture.backends
    import monoculture.embed

    def no_loading(*a, **k):
        raise AssertionError("--check must not load a model or an embedder")

    monkeypatch.setattr(monoculture.backends, "create_backend", no_loading)
    monkeypatch.setattr(monoculture.embed, "get_embedder", no_loading)
    path = ROOT / "examples" / f"{name}.yaml"
    r = invoke("study", str(path), "--check")
    assert r.exit_code == 0, r.output
    assert "valid" in r.output and "nothing was run or written" in r.output
    assert not (ROOT / "examples" / f"{name}.duckdb").exists()

    from monoculture.study import load_study

    s = load_study(path)
    assert {m.attributes.family for m in s.models} == FAMILIES and len(s.models) == 10
    assert all(m.backend == backend and m.revision for m in s.models)
    for m in s.models:
        a = m.attributes.model_dump()
        assert a["organisation"] and a["country"] and a["release_date"], m.name
    assert [r.name for r in s.suites] == ["open-ended", "multilingual"] and s.samples == 5
    assert s.probes is not None and s.probes.suite == "values" and set(s.probes.languages or []) == LANGS7
    assert s.measure is not None and s.measure.what_if_removed == ["qwen"]
    assert s.measure.groups == ["family", "organisation", "country"]
    assert s.report is not None
