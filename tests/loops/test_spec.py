"""The loops: section, the shipped seeds and instructions, user seed files, and the chain plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clihelp import mc
from monoculture.errors import UserError
from monoculture.loops.runner import plan_chains, prepare_loops, step_messages, step_model
from monoculture.loops.seeds import load_seeds, parse_seeds, shipped_instructions, shipped_seeds
from monoculture.study import load_study

TELEPHONE_PROMPT_INIT = Path("llm_culture/data/parameters/prompt_init.json")


def _study(tmp_path: Path, loops, *, suites=None, models=("a", "b"), **extra) -> Path:
    spec = {
        "name": "lp",
        "models": [
            {"name": m, "backend": "openai", "model": m, "params": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": None}}
            for m in models
        ],
        "sampling": {"max_tokens": 8, "seed": 7},
        "loops": loops,
        **({"suites": suites} if suites else {}),
        **extra,
    }
    path = tmp_path / "lp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_shipped_seeds_span_the_properties():
    seeds = shipped_seeds()
    assert len(seeds) >= 20
    assert len({s.id for s in seeds}) == len(seeds) and len({s.text for s in seeds}) == len(seeds)
    assert {"story", "opinion", "description", "news", "instructions"} <= {s.kind for s in seeds}
    words = sorted(len(s.text.split()) for s in seeds)
    assert words[0] <= 30 and words[-1] >= 600
    try:  # the sentiment extremes, where the scorer the loops use is installed
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:  # pragma: no cover - a dev extra
        return
    vader = SentimentIntensityAnalyzer()
    compound = [vader.polarity_scores(s.text)["compound"] for s in seeds]
    assert min(compound) < -0.9 and max(compound) > 0.9


def test_instructions_are_the_ones_the_telephone_runs_used(shared_data):
    """The wording stored in the published output files ("Just output"), which the repository's
    parameter file spells "Juste output"."""
    ours = shipped_instructions()
    assert list(ours) == ["rephrase", "inspiration", "continue"]
    published = {r["name"]: r["prompt"] for r in json.loads((shared_data / "telephone" / TELEPHONE_PROMPT_INIT).read_text())}
    for name, text in ours.items():
        assert text == published[name].replace("Juste output", "Just output")
        runs = sorted((shared_data / "telephone" / "Results").glob(f"*/{name}/*/seed_*/output0.json"))
        assert runs
        assert json.loads(runs[0].read_text())["prompt_init"][0] == text


def test_user_seed_file_errors_name_file_and_line(tmp_path):
    good = tmp_path / "seeds.jsonl"
    good.write_text('{"id": "x", "kind": "story", "text": "Once."}\n\n{"id": 2, "text": "Twice."}\n')
    assert [(s.id, s.kind) for s in load_seeds(good)] == [("x", "story"), ("2", "text")]
    assert [s.id for s in load_seeds(good, ["2"])] == ["2"]
    cases = {
        '{"id": "x", "text": "a"}\n{"id": "y"\n': ("seeds.jsonl:2", "not valid JSON"),
        '{"id": "x", "text": ""}\n': ("seeds.jsonl:1", "field 'text'"),
        '["x"]\n': ("seeds.jsonl:1", "JSON object"),
        '{"id": "x", "text": "a"}\n{"id": "x", "text": "b"}\n': ("seeds.jsonl:2", "used twice (first on line 1)"),
        '{"text": "a"}\n': ("seeds.jsonl:1", "field 'id'"),
        "\n": ("seeds.jsonl", "empty"),
    }
    for body, (where, why) in cases.items():
        bad = tmp_path / "seeds.jsonl"
        bad.write_text(body)
        with pytest.raises(UserError) as e:
            load_seeds(bad)
        assert where in str(e.value) and why in str(e.value), (body, str(e.value))
    with pytest.raises(UserError, match="no seed with id 'nope'"):
        load_seeds("shipped", ["nope"])
    with pytest.raises(UserError, match="no seed texts"):
        parse_seeds("\n \n", "f")
    with pytest.raises(UserError, match="^f:1: field .text."):
        parse_seeds('{"id": "x", "text": 3}', "f")


def test_defaults_and_plan(tmp_path):
    study = load_study(_study(tmp_path, None))  # `loops:` alone: every default
    lp = study.loops
    assert lp is not None and not study.suites
    assert [t.name for t in lp.tasks] == ["rephrase", "inspiration", "continue"]
    assert (lp.steps, lp.chains, lp.seeds, lp.mix) == (50, 5, "shipped", "none")
    prepared = prepare_loops(study)
    assert len(prepared.chains) == len(shipped_seeds()) * 3 * 2 * 5
    assert {c.label for c in prepared.chains} == {"a", "b"}

    study = load_study(
        _study(
            tmp_path,
            {
                "tasks": ["rephrase", {"name": "summarise", "instruction": "Summarise this text:"}],
                "seed_ids": "story-short,tiny-thirty",
                "chains": 2,
                "steps": 4,
                "mix": "both",
                "temperature": 1.1,
            },
        )
    )
    prepared = prepare_loops(study)
    chains = prepared.chains
    assert len(chains) == 2 * 2 * (2 + 2) * 2
    assert {c.label for c in chains} == {"a", "b", "mix:fixed:a+b", "mix:random:a+b"}
    assert all(m.sampling.temperature == 1.1 and m.sampling.max_tokens == 8 for m in prepared.models)
    # identity: the replicate, the model's identity and its sampling make the chain; the length does not
    assert len({c.chain_id for c in chains}) == len(chains)
    again = plan_chains(prepared.section.model_copy(update={"steps": 40}), prepared.models, prepared.seeds)
    assert [c.chain_id for c in again] == [c.chain_id for c in chains]
    hotter = prepare_loops(load_study(_study(tmp_path, {"seed_ids": ["story-short"], "temperature": 1.2})))
    assert not {c.chain_id for c in hotter.chains} & {c.chain_id for c in chains}

    fixed = next(c for c in chains if c.order_kind == "fixed")
    assert [fixed.models[step_model(fixed, t)] for t in range(1, 5)] == ["a", "b", "a", "b"]
    rnd = [c for c in chains if c.order_kind == "random"]
    draws = [[c.models[step_model(c, t)] for t in range(1, 41)] for c in rnd]
    assert all(set(d) == {"a", "b"} for d in draws) and len({tuple(d) for d in draws}) == len(draws)
    assert draws == [[c.models[step_model(c, t)] for t in range(1, 41)] for c in rnd]  # the same on every run

    s = prepared.models[0].sampling.model_copy(update={"system_prompt": "Be brief."})
    assert step_messages("Rephrase:", "Hi.", s) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Rephrase: Hi."},
    ]
    assert step_messages("Rephrase:", "", prepared.models[0].sampling) == [{"role": "user", "content": "Rephrase:"}]


BAD = {
    "steps": ({"steps": 0}, "field 'loops.steps'"),
    "steps bool": ({"steps": True}, "field 'loops.steps'"),
    "chains": ({"chains": 100000}, "field 'loops.chains'"),
    "mix": ({"mix": "shuffled"}, "field 'loops.mix'"),
    "mix one model": ({"mix": "fixed", "models": ["a"]}, "field 'loops.mix'"),
    "unknown model": ({"models": ["c"]}, "field 'loops.models'"),
    "unknown task": ({"tasks": ["summarise"]}, "field 'loops.tasks.0'"),
    "task twice": ({"tasks": ["rephrase", "rephrase"]}, "field 'loops.tasks'"),
    "temperature": ({"temperature": 9}, "field 'loops.temperature'"),
    "unknown key": ({"step": 3}, "field 'loops.step'"),
    "seed file": ({"seeds": "nowhere.jsonl"}, "field 'loops.seeds'"),
    "seed ids": ({"seed_ids": ["nope"]}, "field 'loops.seed_ids'"),
    "images": ({"images": {"rounds": 3}}, "field 'loops.images'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_sections_exit_2_naming_the_field_and_write_nothing(tmp_path, case):
    section, field = BAD[case]
    path = _study(tmp_path, section)
    for args in (("loop", "run", path), ("loop", path), ("loop", "run", path, "--check"), ("study", path)):
        code, out = mc(*args)
        assert code == 2, out
        assert field in out and str(path) in out, out
    assert not list(tmp_path.glob("*.duckdb*"))


def test_bad_seed_line_names_file_and_line(tmp_path):
    (tmp_path / "mine.jsonl").write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": null}\n')
    path = _study(tmp_path, {"seeds": "mine.jsonl"})
    code, out = mc("loop", path)
    assert code == 2 and "field 'loops.seeds'" in out and "mine.jsonl:2" in out and "field 'text'" in out, out
    assert not list(tmp_path.glob("*.duckdb*"))


def test_suites_only_optional_with_loops(tmp_path):
    path = _study(tmp_path, None)
    text = yaml.safe_load(path.read_text())
    del text["loops"]
    path.write_text(yaml.safe_dump(text))
    code, out = mc("study", path, "--check")
    assert code == 2 and "field 'suites'" in out, out
    code, out = mc("study", _study(tmp_path, None, suites=[{"name": "open-ended", "limit": 1}]), "--check")
    assert code == 0 and "phases: run, loops" in out, out


def test_check_says_what_would_run(tmp_path):
    path = _study(tmp_path, {"seed_ids": ["story-short"], "chains": 2, "steps": 3, "mix": "fixed", "tasks": ["continue"]})
    code, out = mc("loop", "run", path, "--check")
    assert code == 0, out
    assert "6 chains" in out and "18 steps" in out and "nothing was run or written" in out, out
    code, out = mc("study", path, "--check")
    assert code == 0 and "loops: 6 chains" in out and "phases: loops" in out, out
    assert not list(tmp_path.glob("*.duckdb*"))


def test_run_refuses_a_study_without_suites(tmp_path):
    code, out = mc("run", _study(tmp_path, {"steps": 2}))
    assert code == 2 and "names no suites" in out and "monoculture loop" in out, out
    assert not list(tmp_path.glob("*.duckdb*"))


def test_measure_needs_suites(tmp_path):
    code, out = mc("study", _study(tmp_path, {"steps": 2}, measure={"embedder": "tfidf"}), "--check")
    assert code == 2 and "field 'measure'" in out and "loop summary" in out, out


def test_images_only_section(tmp_path):
    """tasks: [] runs no text chains and needs no models, only with images:."""
    path = _study(tmp_path, {"tasks": []})
    code, out = mc("loop", path, "--check")
    assert code == 2 and "field 'loops'" in out and "images" in out, out
    spec = yaml.safe_load(path.read_text())
    spec["models"] = []
    spec["loops"] = {"steps": 2}
    path.write_text(yaml.safe_dump(spec))
    code, out = mc("loop", path, "--check")
    assert code == 2 and "field 'models'" in out, out
