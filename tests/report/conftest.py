"""Small measured stores for the report tests, built once per session.

The texts are generated so that the figures have something to show: two families whose models
draw on a shared family vocabulary, one loner, repeated samples (k = 2) and prompts in two
languages.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from monoculture.importers import Imported, import_records
from monoculture.measure import measure
from monoculture.store import Store

FAMILIES = {
    "alpha-small": ("alpha", "Org A", "US"),
    "alpha-large": ("alpha", "Org A", "US"),
    "beta-one": ("beta", "Org B", "FR"),
    "beta-two": ("beta", "Org B", "FR"),
    "loner": ("gamma", "Org C", "KE"),
}
VOCAB = {
    "alpha": "river stone lantern harvest orchard meadow copper signal quiet anchor".split(),
    "beta": "engine circuit vector lattice quantum signal module kernel socket buffer".split(),
    "gamma": "spice market drum sunrise savanna ember story elder rain canoe".split(),
}
COMMON = "the a of and to in is that it for on with as was".split()

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click me</a>',
    "</script><script>alert(2)</script>",
]


def _prompts(n: int) -> list[tuple[str, str, str]]:
    out = []
    for i in range(n):
        lang = "fr" if i % 3 == 2 else "en"
        text = (
            f"Décrivez le sujet numéro {i} en quelques phrases."
            if lang == "fr"
            else f"Describe topic number {i} in a few sentences."
        )
        out.append((f"p{i:02d}", text, lang))
    return out


def _answer(rng: random.Random, model: str, prompt_idx: int, sample: int) -> str:
    fam = FAMILIES[model][0]
    topic = [f"topic{prompt_idx}", f"subject{prompt_idx}", f"theme{prompt_idx}"]
    words = []
    for _ in range(rng.randint(25, 45)):
        r = rng.random()
        if r < 0.45:
            words.append(rng.choice(VOCAB[fam]))
        elif r < 0.65:
            words.append(rng.choice(topic))
        elif r < 0.8 and model.endswith(("large", "two")):
            words.append(f"{model.split('-')[1]}word{rng.randint(0, 5)}")
        else:
            words.append(rng.choice(COMMON))
    return " ".join(words).capitalize() + "."


def make_store(
    path: Path,
    *,
    n_prompts: int = 12,
    k: int = 2,
    hostile: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    rename: dict[str, str] | None = None,
    attrs: dict[str, dict] | None = None,
) -> Path:
    """``rename`` stores a model under another name (its answers unchanged); ``attrs``
    overrides attributes of models by their stored names."""
    rng = random.Random(seed)
    rename = rename or {}
    original = {v: k for k, v in rename.items()}
    records = []
    models = list(FAMILIES)
    if hostile:
        models = models + ["evil<img src=x onerror=alert(4)>"]
    for pi, (pid, ptext, lang) in enumerate(_prompts(n_prompts)):
        if hostile and pi == 0:
            ptext = "Prompt with <script>alert(5)</script> inside"
        for m in models:
            for s in range(k):
                fam_model = m if m in FAMILIES else "loner"
                text = _answer(rng, fam_model, pi, s)
                if hostile and pi == 0:
                    text = HOSTILE[(models.index(m) + s) % len(HOSTILE)] + " " + text
                records.append(
                    Imported(
                        model=rename.get(m, m),
                        prompt_id=pid,
                        prompt=ptext,
                        text=text,
                        sample_index=s,
                        language=lang,
                        category="test",
                    )
                )
    with Store(path) as st:
        import_records(st, records, "jsonl")
        rows = []
        for r in st.models().to_dict("records"):
            fam, org, country = FAMILIES.get(original.get(r["name"], r["name"]), ("<b>family</b>", "Org <i>X</i>", "ZZ"))
            a = {"family": fam, "organisation": org, "country": country, "open_weights": r["name"] != "alpha-large"}
            rows.append({**r, "identity": None, "attributes": {**a, **(attrs or {}).get(r["name"], {})}})
        st.upsert_models(rows)
        measure(st, embedder="tfidf", n_boot=n_boot, show_progress=False)
    return path


@pytest.fixture(scope="session")
def measured_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("report-store") / "small.duckdb")


@pytest.fixture(scope="session")
def hostile_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("report-hostile") / "hostile.duckdb", n_prompts=8, hostile=True)


RLO_MODEL = "loner\u202e"  # a right-to-left override at the end of a model name
RLO_ORG = "Org C\u202e"


@pytest.fixture(scope="session")
def bidi_store(tmp_path_factory) -> tuple[Path, str, str]:
    """The loner (a distinct voice, so it leads the headline) renamed with a right-to-left
    override, and its organisation too: (store, model name, organisation)."""
    return (
        make_store(
            tmp_path_factory.mktemp("report-bidi") / "bidi.duckdb",
            n_prompts=10,
            n_boot=100,
            rename={"loner": RLO_MODEL},
            attrs={RLO_MODEL: {"organisation": RLO_ORG}},
        ),
        RLO_MODEL,
        RLO_ORG,
    )


@pytest.fixture(scope="session")
def single_sample_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("report-k1") / "k1.duckdb", n_prompts=10, k=1)
