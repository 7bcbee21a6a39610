"""Property-based tests of the study loader (issue 16, Must show 2).

For any generated study (valid or damaged in one or more fields), ``load_study`` either gives
exactly what a reference reading of the YAML gives, or raises a UserError naming the file and a
field the reference says is wrong; ``monoculture run`` on a rejected study exits 2 and leaves the
store exactly as it was. The reference below is written from the documented rules (field types
and bounds, backend params, unique names and identities), not from the loader's code.
Deterministic: tests/conftest.py registers a derandomised profile.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from clihelp import mc, snapshot
from monoculture.errors import UserError
from monoculture.importers import Imported, import_records
from monoculture.store import Store
from monoculture.study import MAX_BATCH, MAX_SAMPLES, MAX_SEED, MAX_TOKENS, load_study
from monoculture.urls import server_identity


class Bad(Exception):
    """The reference's verdict: the study is invalid; ``fields`` are the places it names."""

    def __init__(self, *fields: str):
        self.fields = fields


# ---- values of every kind, and how the reference reads them --------------------------------


def chance(draw, percent: int) -> bool:
    """True with about this probability. (Hypothesis favours the ends of a range, so the test
    is on a band in its middle rather than on small numbers.)"""
    return 20 <= draw(st.integers(0, 99)) < 20 + percent


@st.composite
def evenly(draw, *options):
    """One of the strategies, each about equally often (``st.one_of`` favours the first)."""
    return draw(options[draw(st.integers(0, 999)) % len(options)])


@st.composite
def mostly(draw, good, bad, percent_bad: int = 12):
    return draw(bad) if chance(draw, percent_bad) else draw(good)


WORDS = evenly(*map(st.just, ["hot", "", "many", "1e3x", "none"]))


def ints(lo: int, hi: int):
    inside = st.integers(lo, hi)
    outside = st.one_of(st.integers(hi + 1, hi + 10**15), st.integers(lo - 10**6, lo - 1))
    odd_but_fine = evenly(inside.map(float), inside.map(str))
    bad = evenly(
        outside, st.booleans(), st.floats(-10, 10).filter(lambda x: not float(x).is_integer()), WORDS, st.none(), st.just([1])
    )
    return mostly(evenly(inside, inside, inside, odd_but_fine), bad)


def floats(lo: float, hi: float, *, lo_open: bool = False):
    inside = st.floats(lo, hi, exclude_min=lo_open)
    odd_but_fine = evenly(inside.map(lambda x: f"{x:.3f}"), st.integers(int(lo) + int(lo_open), int(hi)))
    bad = evenly(
        st.floats(hi + 0.01, 1e6),
        st.floats(-1e6, lo - 0.01),
        st.just(math.nan),
        st.just(math.inf),
        st.booleans(),
        WORDS,
        st.none(),
    )
    return mostly(evenly(inside, inside, inside, odd_but_fine), bad)


def read_int(v, lo: int, hi: int, field: str) -> int:
    if isinstance(v, bool) or v is None or isinstance(v, list):
        raise Bad(field)
    if isinstance(v, float):
        if not v.is_integer():
            raise Bad(field)
        v = int(v)
    if isinstance(v, str):
        try:
            v = int(v)
        except ValueError:
            raise Bad(field) from None
    if not lo <= v <= hi:
        raise Bad(field)
    return v


def read_float(v, lo: float, hi: float, field: str, *, lo_open: bool = False) -> float:
    if isinstance(v, bool) or v is None or isinstance(v, list):
        raise Bad(field)
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise Bad(field) from None
    v = float(v)
    if math.isnan(v) or v > hi or v < lo or (lo_open and v == lo):
        raise Bad(field)
    return v


SAMPLING_RULES = {
    "temperature": lambda v, f: read_float(v, 0.0, 5.0, f),
    "top_p": lambda v, f: read_float(v, 0.0, 1.0, f, lo_open=True),
    "max_tokens": lambda v, f: read_int(v, 1, MAX_TOKENS, f),
    "seed": lambda v, f: read_int(v, -MAX_SEED, MAX_SEED, f),
}
DEFAULT_SAMPLING = {"temperature": 0.7, "top_p": 1.0, "max_tokens": 256, "seed": 0}
sampling_values = st.fixed_dictionaries(
    {},
    optional={
        "temperature": floats(0.0, 5.0),
        "top_p": floats(0.0, 1.0, lo_open=True),
        "max_tokens": ints(1, MAX_TOKENS),
        "seed": ints(-MAX_SEED, MAX_SEED),
        "stop": mostly(st.lists(st.text(max_size=3), max_size=2), st.just("x")),
    },
)

NAMES = st.text(st.sampled_from("ab-_ é中[]/\u202e"), max_size=4)
URLS = [
    "http://127.0.0.1:9/v1",
    "http://127.0.0.1:9/v1/",
    "HTTP://127.0.0.1:9/v1",
    "http://u:pw@127.0.0.1:9/v1?api-key=k",
    "http://127.0.0.1:8/v1",
    "localhost",
]


@st.composite
def model_specs(draw):
    backend = "nosuch" if chance(draw, 5) else draw(evenly(st.just("openai"), st.just("transformers")))
    params: dict = {}
    if backend == "openai":
        params["api_key_env"] = None
        if draw(st.booleans()):
            params["base_url"] = draw(evenly(*map(st.just, URLS)))
        if draw(st.booleans()):
            params["concurrency"] = draw(ints(1, 1024))
        if draw(st.booleans()):
            params["timeout"] = draw(floats(0.001, 86_400.0))
    elif backend == "transformers" and draw(st.booleans()):
        params["batch_size"] = draw(ints(1, 4096))
    if chance(draw, 8):
        params[draw(evenly(*map(st.just, ["concurency", "batchsize", "token"])))] = 1
    model_id = "" if chance(draw, 4) else draw(evenly(*map(st.just, ["m1", "m2", "m3"])))
    m = {"name": draw(NAMES.filter(bool)) if not chance(draw, 4) else "", "backend": backend, "model": model_id, "params": params}
    if draw(st.booleans()):
        m["sampling"] = draw(sampling_values)
    if chance(draw, 4):
        m["temperature"] = 0.5  # a sampling field one level too high
    return m


@st.composite
def studies(draw):
    data: dict = {
        "name": draw(NAMES.filter(bool)),
        "models": [] if chance(draw, 3) else draw(st.lists(model_specs(), min_size=1, max_size=3)),
        "suites": ["open-ended"],
    }
    for key, strat in (("samples", ints(1, MAX_SAMPLES)), ("batch_size", ints(1, MAX_BATCH))):
        if draw(st.booleans()):
            data[key] = draw(strat)
    if draw(st.booleans()):
        data["sampling"] = draw(sampling_values)
    if chance(draw, 4):
        data["sampels"] = 2
    return data


# ---- the reference reading -----------------------------------------------------------------


def read_sampling(raw: dict, base: dict, where: str) -> dict:
    out = dict(base)
    for k, v in raw.items():
        f = f"{where}.{k}"
        if k in SAMPLING_RULES:
            out[k] = SAMPLING_RULES[k](v, f)
        elif k == "stop":
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise Bad(f)
            out[k] = v
        else:
            raise Bad(f)
    return out


def reference(data: dict) -> dict:
    """What a study file means, or Bad naming the first wrong places. Field errors are all found
    before the whole-study rules (unique names, identities) are applied, as documented."""
    field_errors: list[str] = []

    def attempt(fn, *a):
        try:
            return fn(*a)
        except Bad as e:
            field_errors.extend(e.fields)
            return None

    for k in data:
        if k not in {"name", "models", "suites", "samples", "sampling", "batch_size"}:
            field_errors.append(k)
    samples = attempt(read_int, data.get("samples", 1), 1, MAX_SAMPLES, "samples")
    attempt(read_int, data.get("batch_size", 16), 1, MAX_BATCH, "batch_size")
    study_sampling = attempt(read_sampling, data.get("sampling", {}), DEFAULT_SAMPLING, "sampling")
    models = data["models"]
    if not models:
        field_errors.append("models")
    for i, m in enumerate(models):
        w = f"models.{i}"
        for k in m:
            if k not in {"name", "backend", "model", "params", "sampling"}:
                field_errors.append(f"{w}.{k}")
        if not m["name"]:
            field_errors.append(f"{w}.name")
        if not m["model"]:
            field_errors.append(f"{w}.model")
        if m["backend"] == "nosuch":
            field_errors.append(f"{w}.backend")
        if "token" in m["params"]:
            field_errors.append(f"{w}.params")
    if field_errors:
        raise Bad(*field_errors)

    names = [m["name"] for m in models]
    if len(set(names)) < len(names):
        raise Bad("used twice")
    seen: dict = {}
    out_models = []
    for i, m in enumerate(models):
        w = f"models.{i}"
        sampling = read_sampling(m.get("sampling", {}), study_sampling, f"{w}.sampling")
        p = m["params"]
        accepted = {"openai": {"api_key_env", "base_url", "concurrency", "timeout"}, "transformers": {"batch_size"}}[m["backend"]]
        for k in p:
            if k not in accepted:
                raise Bad(w, f"params.{k}")
        if "concurrency" in p and not (type(p["concurrency"]) is int and 1 <= p["concurrency"] <= 1024):
            raise Bad(w, "params.concurrency")
        if "batch_size" in p and not (type(p["batch_size"]) is int and 1 <= p["batch_size"] <= 4096):
            raise Bad(w, "params.batch_size")
        if "timeout" in p:
            t = p["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not (0.001 <= t <= 86_400):
                raise Bad(w, "params.timeout")
        if "base_url" in p and "://" not in p["base_url"]:
            raise Bad(w, "params.base_url")
        server = server_identity(p["base_url"]) if p.get("base_url") else None
        ident = (
            m["backend"],
            m["model"],
            server,
            tuple(sorted((k, v) for k, v in sampling.items() if k != "stop")),
            tuple(sampling.get("stop", [])),
        )
        if ident in seen:
            raise Bad("same identity")
        seen[ident] = m["name"]
        out_models.append(
            {"name": m["name"], "backend": m["backend"], "model": m["model"], "params": p, "sampling": sampling, "server": server}
        )
    return {"name": data["name"], "samples": samples, "sampling": study_sampling, "models": out_models}


def loaded(study) -> dict:
    return {
        "name": study.name,
        "samples": study.samples,
        "sampling": {k: getattr(study.sampling, k) for k in DEFAULT_SAMPLING}
        | ({"stop": study.sampling.stop} if study.sampling.stop else {}),
        "models": [
            {
                "name": m.name,
                "backend": m.backend,
                "model": m.model,
                "params": m.params,
                "sampling": {k: getattr(s, k) for k in DEFAULT_SAMPLING} | ({"stop": s.stop} if s.stop else {}),
                "server": m.identity().get("server"),
            }
            for m in study.models
            for s in [study.sampling_for(m)]
        ],
    }


def normalise(ref: dict) -> dict:
    """The reference's sampling dicts carry ``stop`` only when one was given and non-empty."""

    def fix(s: dict) -> dict:
        s = dict(s)
        if not s.get("stop"):
            s.pop("stop", None)
        return s

    return {**ref, "sampling": fix(ref["sampling"]), "models": [{**m, "sampling": fix(m["sampling"])} for m in ref["models"]]}


# ---- the properties ------------------------------------------------------------------------


@given(data=studies())
@settings(max_examples=300)
def test_load_study_is_the_reference_reading_or_an_error_naming_the_field(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))  # the reference reads what YAML reads
    try:
        want = normalise(reference(data))
    except Bad as bad:
        with pytest.raises(UserError) as e:
            load_study(path)
        msg = str(e.value)
        assert msg.startswith(str(path)), msg
        assert any(f in msg for f in bad.fields), (bad.fields, msg)
        return
    assert loaded(load_study(path)) == want


@given(text=st.text(st.sampled_from("models:[]{}- \n\t:'\"#&*!|>%@`\\,?ab1\x00\u00e9"), max_size=40))
def test_any_text_loads_or_is_a_one_line_error_naming_the_file(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("study") / "junk.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_study(path)
    except UserError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e).strip()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.duckdb"
    with Store(path) as s:
        import_records(s, [Imported("m1", "p1", "hello?", "hi"), Imported("m2", "p1", "hello?", "hey")], "jsonl")
        s.register_study("study", None, {"name": "study"}, ["m1", "m2"], [])
    return path


@given(data=studies())
@settings(max_examples=40)
def test_a_rejected_run_leaves_the_store_as_it_was(tmp_path_factory, seeded, data):
    data = {**data, "name": "study"}  # the name of the study already in the store
    try:
        reference(yaml.safe_load(yaml.safe_dump(data)))
        return  # valid studies are covered above; running them would call a server
    except Bad:
        pass
    d = tmp_path_factory.mktemp("run")
    store = d / "store.duckdb"
    shutil.copy(seeded, store)
    path = d / "study.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    before = snapshot(store)
    code, out = mc("run", path, "--store", store, "-q")
    assert code == 2, out
    assert "study.yaml" in out
    assert snapshot(store) == before
