"""Image loops on tiny local pipelines (built from configs in tests/tiny_image_models.py): the
spec, the runner into a store (every round once, resume adds nothing, a kill-and-resume equals an
uninterrupted run, failures are rows retried next run) and image_summary's figures and thumbnails."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import pytest
import yaml

pytest.importorskip("diffusers")
pytest.importorskip("PIL")

from PIL import Image  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from clihelp import mc  # noqa: E402
from monoculture.errors import UserError  # noqa: E402
from monoculture.loops.image_stages import DiffusersTextToImage  # noqa: E402
from monoculture.loops.images import (  # noqa: E402
    IMAGE_SEEDS,
    IMAGE_TASK,
    ImageLoopSpec,
    image_hash,
    image_summary,
    plan_image_chains,
    preflight_images,
    run_image_loops,
)
from monoculture.loops.tables import read_steps, register_chains  # noqa: E402
from monoculture.store import Store  # noqa: E402
from monoculture.study import load_study  # noqa: E402
from tiny_image_models import cached_image_model  # noqa: E402

SEEDS = ["A stormy lighthouse on a cliff at night.", "A cat sleeping on a pile of books."]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-image-models")
    return {k: cached_image_model(k, cache_dir=d) for k in ("sd", "captioner", "clip")}


def _spec(tiny, **kw) -> ImageLoopSpec:
    base = {
        "text_to_image": {"name": "tiny-sd", "model": str(tiny["sd"]), "params": {"steps": 2, "guidance": 3.0}},
        "captioner": {"name": "tiny-cap", "model": str(tiny["captioner"]), "params": {"max_new_tokens": 8}},
        "embedder": {"model": str(tiny["clip"])},
        "rounds": 3,
        "seeds": SEEDS,
        "device": "cpu",
    }
    base.update(kw)
    return ImageLoopSpec.model_validate(base)


def _steps(st: Store) -> list[tuple]:
    return st.con.execute(
        "SELECT chain_id, step, key, input_key, text, image, error, attempts FROM loop_steps ORDER BY chain_id, step"
    ).fetchall()


# -- spec --------------------------------------------------------------------------------------


def test_spec_defaults_and_shorthands():
    s = ImageLoopSpec.model_validate(
        {"text_to_image": "stabilityai/sdxl-turbo", "captioner": "Salesforce/blip-image-captioning-large"}
    )
    assert s.rounds == 100 and s.chains == 1 and s.embedder.model == "openai/clip-vit-large-patch14"
    assert [x.id for x in s.seeds] == [x["id"] for x in IMAGE_SEEDS] and len(s.seeds) == 12
    assert s.text_to_image[0].name == "sdxl-turbo" and s.captioner[0].name == "blip-image-captioning-large"
    s = ImageLoopSpec.model_validate({"text_to_image": ["a/x", "b/y"], "captioner": "c/z", "seeds": ["one", "two"], "chains": 2})
    assert [x.id for x in s.seeds] == ["seed-01", "seed-02"]
    chains = plan_image_chains(s)
    assert len(chains) == 2 * 2 * 2 and {c.label for c in chains} == {"x+z", "y+z"}
    assert {c.kind for c in chains} == {"image"} and {c.task for c in chains} == {IMAGE_TASK}
    assert len({c.chain_id for c in chains}) == 8
    # rounds is not part of the identity (more rounds continue a chain); a stage parameter is
    longer = plan_image_chains(ImageLoopSpec.model_validate({**s.model_dump(), "rounds": 500}))
    assert [c.chain_id for c in longer] == [c.chain_id for c in chains]
    other = s.model_dump()
    other["text_to_image"][0]["params"]["steps"] = 4
    assert plan_image_chains(ImageLoopSpec.model_validate(other))[0].chain_id != chains[0].chain_id
    other = s.model_dump()
    other["text_to_image"][0]["variant"] = "fp16"
    assert plan_image_chains(ImageLoopSpec.model_validate(other))[0].chain_id != chains[0].chain_id


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"rounds": True}, "rounds", "must be a number"),
        ({"rounds": 0}, "rounds", "greater than or equal to 1"),
        ({"text_to_image": {"model": "x", "params": {"height": 100}}}, "text_to_image.0.params.height", "multiple of 8"),
        ({"text_to_image": {"model": "x", "dtype": "int8"}}, "text_to_image.0.dtype", "unknown dtype"),
        ({"captioner": {"model": "y", "params": {"max_tokens": 5}}}, "captioner.0.params.max_tokens", "Extra inputs"),
        ({"captioner": [{"model": "a/y"}, {"model": "b/y"}]}, "", "name 'y' is used twice"),
        ({"seeds": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}, "", "id 'a' is used twice"),
        ({"colour": "red"}, "colour", "Extra inputs"),
    ],
)
def test_spec_errors_name_the_field(patch, field, words):
    with pytest.raises(ValidationError) as e:
        ImageLoopSpec.model_validate({"text_to_image": "x", "captioner": "y", **patch})
    err = e.value.errors()[0]
    assert ".".join(str(x) for x in err["loc"]) == field
    assert words in err["msg"]


def test_preflight_refuses_before_writing(tiny, tmp_path):
    bad = _spec(tiny, captioner={"model": str(tmp_path / "nowhere")})
    with Store(tmp_path / "s.duckdb") as st:
        with pytest.raises(UserError, match=r"loops.images.captioner.0: model path .* does not exist"):
            run_image_loops(st, "study", bad, show_progress=False)
        with pytest.raises(UserError, match="unknown kind 'nope'"):
            run_image_loops(
                st, "study", _spec(tiny, text_to_image={"model": str(tiny["sd"]), "kind": "nope"}), show_progress=False
            )
        assert st.con.execute("SELECT count(*) FROM loop_chains").fetchone()[0] == 0
        assert image_summary(st, "study") is None  # no image chains: no image summary


# -- runner ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ran(tiny, tmp_path_factory):
    """3 rounds of 2 chains into a store; the outcome of the run and of an immediate rerun."""
    path = tmp_path_factory.mktemp("images") / "s.duckdb"
    spec = _spec(tiny)
    with Store(path) as st:
        first = run_image_loops(st, "study", spec, show_progress=False)
        rows = _steps(st)
        again = run_image_loops(st, "study", spec, show_progress=False)
        assert _steps(st) == rows
    return {"path": path, "spec": spec, "first": first, "again": again, "rows": rows}


@pytest.mark.slow
def test_runs_every_round_once_and_resume_adds_nothing(ran):
    first, again = ran["first"], ran["again"]
    assert (first.chains, first.planned, first.generated, first.failed, first.finished) == (2, 6, 6, 0, 2)
    assert first.embedded == 6 + len({r[4] for r in ran["rows"]} | set(SEEDS))  # every image, every distinct caption and seed
    assert (again.generated, again.skipped, again.embedded, again.finished) == (0, 6, 0, 2)
    with Store(ran["path"], read_only=True) as st:
        frame = read_steps(st, "study", kind="image", with_images=True)
    assert len(frame) == 2 * 4 and sorted(frame["step"].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert set(frame["label"]) == {"tiny-sd+tiny-cap"} and set(frame["task"]) == {IMAGE_TASK}
    with Store(ran["path"], read_only=True) as st:
        cached = {h for (h,) in st.con.execute("SELECT text_hash FROM embeddings WHERE embedder LIKE 'clip-image:%'").fetchall()}
    assert {image_hash(bytes(b)) for b in frame["image"].dropna()} == cached  # DuckDB's hash is image_hash
    for r in frame[frame["step"] > 0].itertuples():
        img = Image.open(io.BytesIO(bytes(r.image)))
        assert img.format == "PNG" and img.size == (32, 32)
        assert isinstance(r.text, str) and r.text.strip()
    # each round's input is the previous caption: a chain is a chain
    for _, g in frame.sort_values("step").groupby("chain_id"):
        assert g["step"].tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_interrupted_and_resumed_equals_uninterrupted(ran, tiny, tmp_path):
    """Two rounds, then the full three (as a rerun after a kill would): the same keys, captions
    and image bytes as the uninterrupted run. (Same batches: a chain's noise is its own, but a
    batch of another size may take other float kernels, which can move a pixel.)"""
    with Store(tmp_path / "s.duckdb") as st:
        short = run_image_loops(st, "study", _spec(tiny, rounds=2), show_progress=False)
        assert short.generated == 4
        rest = run_image_loops(st, "study", _spec(tiny), show_progress=False)
        assert (rest.generated, rest.skipped) == (2, 4)
        rows = _steps(st)
    strip = [r[:6] for r in rows]  # attempts and errors aside
    assert strip == [r[:6] for r in ran["rows"]]


class FlakyTextToImage(DiffusersTextToImage):
    """The tiny pipeline, failing every round 2 draw while ``broken`` is set (an OOM, a server
    gone): the runner must store the failure and stop only that chain's progress."""

    broken = True

    def draw(self, prompts, seeds):
        if FlakyTextToImage.broken and any(p not in SEEDS for p in prompts):
            raise RuntimeError("CUDA out of memory (injected)")
        return super().draw(prompts, seeds)


@pytest.mark.slow
def test_failures_are_rows_retried_next_run(ran, tiny, tmp_path):
    spec = _spec(
        tiny,
        text_to_image={
            "name": "tiny-sd",
            "model": str(tiny["sd"]),
            "kind": f"{__name__}:FlakyTextToImage",
            "params": {"steps": 2, "guidance": 3.0},
        },
    )
    FlakyTextToImage.broken = True
    with Store(tmp_path / "s.duckdb") as st:
        out = run_image_loops(st, "study", spec, show_progress=False)
        assert (out.generated, out.failed, out.finished) == (2, 2, 0)
        assert "out of memory" in out.errors[0]
        failed = st.con.execute("SELECT step, text, image, error FROM loop_steps WHERE error IS NOT NULL").fetchall()
        assert len(failed) == 2 and all(r[0] == 2 and r[1] is None and r[2] is None and "injected" in r[3] for r in failed)
        assert len(read_steps(st, "study", kind="image")) == 2 * 2  # seed + round 1 per chain
        FlakyTextToImage.broken = False
        out = run_image_loops(st, "study", spec, show_progress=False)
        assert (out.generated, out.failed, out.skipped, out.finished) == (4, 0, 2, 2)
        retried = st.con.execute("SELECT attempts FROM loop_steps WHERE step = 2").fetchall()
        assert sorted(r[0] for r in retried) == [2, 2]
        assert st.con.execute("SELECT count(*) FROM loop_steps WHERE error IS NOT NULL").fetchone()[0] == 0
        # the kind is part of the stage's identity, so these are other chains than the built-in one's
        assert {r[0] for r in _steps(st)}.isdisjoint({r[0] for r in ran["rows"]})


# -- summary -----------------------------------------------------------------------------------


def _finite_or_none(obj) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _finite_or_none(v)
    elif isinstance(obj, list):
        for v in obj:
            _finite_or_none(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj)


@pytest.mark.slow
def test_image_summary_figures_and_thumbnails(ran):
    with Store(ran["path"], read_only=True) as st:
        s = image_summary(st, "study", seed=0, bootstrap=200)
        assert image_summary(st, "another study") is None
    assert s is not None
    json.dumps(s, allow_nan=False)
    _finite_or_none(s)
    assert s["chains"] == 2 and s["labels"] == [{"label": "tiny-sd+tiny-cap", "chains": 2, "rounds_min": 3, "rounds_max": 3}]
    assert s["embedder"] == f"clip-image:{ran['spec'].embedder.model}" and not s["notes"]
    drift = {r["step"]: r for r in s["drift"]}
    assert sorted(drift) == [1, 2, 3] and drift[1]["value"] == pytest.approx(1.0)
    assert all(-1.0 <= r["value"] <= 1.0 + 1e-9 and r["chains"] == 2 for r in s["drift"])
    assert all(r["ci"][0] <= r["value"] + 1e-9 <= r["ci"][1] + 2e-9 for r in s["drift"])
    conv = {r["step"]: r for r in s["convergence"]}
    assert sorted(conv) == [1, 2, 3] and conv[1]["difference"] == pytest.approx(0.0)
    assert all(r["seeds"] == 2 and r["value"] is not None for r in conv.values())
    assert [r["final_step_max"] for r in s["diversity"]] == [3] and s["diversity"][0]["vendi_final"] >= 1.0
    assert [r["step"] for r in s["prompt_match"]] == [1, 2, 3]
    assert all(r["value"] is not None for r in s["prompt_match"])
    m = s["motifs"]
    assert m is not None and sum(x["size"] for x in m["motifs"]) == 2
    assert all(x["representatives"] and x["thumbnail_chains"] for x in m["motifs"])
    # captions as text: the seed prompt at step 0, the captions after
    caps = s["captions"]
    assert [r["step"] for r in caps["drift"]] == [0, 1, 2, 3] and caps["drift"][0]["value"] == pytest.approx(1.0)
    assert [r["step"] for r in caps["lexical"]] == [0, 1, 2, 3]
    # thumbnails: first, middle and last image of both chains, each a 64 x 64 (or smaller) PNG
    thumbs = s["thumbnails"]
    assert sorted((t["chain_id"], t["step"]) for t in thumbs) == sorted(
        (c, t) for c in {t["chain_id"] for t in thumbs} for t in (1, 2, 3)
    )
    assert len({t["chain_id"] for t in thumbs}) == 2
    for t in thumbs:
        img = Image.open(io.BytesIO(base64.b64decode(t["png_base64"], validate=True)))
        assert img.format == "PNG" and max(img.size) <= 64
        assert (t["motif"] is not None) == (t["step"] == 3)


@pytest.mark.slow
def test_summary_notes_images_without_vectors(ran, tmp_path):
    """Rounds stored by a run killed before it embedded them: left out with a note, not a crash."""
    import shutil

    path = tmp_path / "copy.duckdb"
    shutil.copy(ran["path"], path)
    with Store(path) as st:
        st.con.execute(
            "DELETE FROM embeddings WHERE embedder LIKE 'clip-image:%' AND text_hash IN (SELECT text_hash FROM embeddings WHERE embedder LIKE 'clip-image:%' LIMIT 1)"
        )
        s = image_summary(st, "study", bootstrap=50)
    assert s is not None and any("have no clip-image" in n for n in s["notes"])
    json.dumps(s, allow_nan=False)


def test_registered_chain_without_rounds_summarises(tmp_path):
    """A chain registered but never advanced (a run stopped at once) gives a summary with no
    image figures and a note, not an error."""
    spec = ImageLoopSpec.model_validate({"text_to_image": "a/x", "captioner": "b/y", "seeds": ["one"]})
    with Store(tmp_path / "s.duckdb") as st:
        register_chains(st, "study", plan_image_chains(spec))
        s = image_summary(st, "study")
    assert s is not None and s["chains"] == 1 and s["drift"] == [] and s["thumbnails"] == []
    assert s["notes"]
    json.dumps(s, allow_nan=False)


# -- study files -------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "loops-images-gpu.yaml"


def test_gpu_example_is_valid_and_names_real_models():
    """The GPU example validates (``--check`` loads no model) and names the real models."""
    study = load_study(EXAMPLE)
    spec = study.loops.image_spec()
    assert [t.model for t in spec.text_to_image] == ["stabilityai/sdxl-turbo", "stabilityai/stable-diffusion-xl-base-1.0"]
    assert [c.model for c in spec.captioner] == ["Salesforce/blip-image-captioning-large"]
    assert spec.embedder.model == "openai/clip-vit-large-patch14" and spec.rounds == 100 and len(spec.seeds) == 12
    assert spec.text_to_image[0].params.steps == 1 and spec.text_to_image[0].params.guidance == 0.0
    assert {t.variant for t in spec.text_to_image} == {"fp16"}
    preflight_images(spec)  # hub ids, installed stack, a device that exists (cuda there, cpu here)
    assert len(plan_image_chains(spec)) == 24
    code, out = mc("study", EXAMPLE, "--check")
    assert code == 0 and "image" in out and "nothing was run" in out, out


@pytest.mark.slow
def test_study_file_runs_text_and_image_loops(tiny, tmp_path):
    """``monoculture loop STUDY`` with an images: section: the text chains and the image chains
    land in one store; a rerun adds nothing."""
    from tiny_models import cached_tiny_model

    qwen = cached_tiny_model("qwen2", seed=1)
    images = _spec(tiny, rounds=2).model_dump(mode="json")
    path = tmp_path / "both.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "both",
                "models": [{"name": "tiny-qwen", "backend": "transformers", "model": str(qwen)}],
                "sampling": {"max_tokens": 8},
                "loops": {"tasks": ["rephrase"], "seed_ids": ["story-short"], "steps": 2, "chains": 1, "images": images},
            }
        )
    )
    code, out = mc("loop", path)
    assert code == 0, out
    with Store(tmp_path / "both.duckdb", read_only=True) as st:
        kinds = dict(st.con.execute("SELECT kind, count(*) FROM loop_chains GROUP BY kind").fetchall())
        steps = st.con.execute("SELECT count(*) FROM loop_steps WHERE error IS NULL").fetchone()[0]
        assert kinds == {"text": 1, "image": 2} and steps == 2 + 2 * 2
        s = image_summary(st, "both", bootstrap=50)
    assert s is not None and s["chains"] == 2 and s["thumbnails"]
    code, out = mc("loop", path)
    assert code == 0, out
    with Store(tmp_path / "both.duckdb", read_only=True) as st:
        assert st.con.execute("SELECT count(*) FROM loop_steps").fetchone()[0] == steps


# -- stages ------------------------------------------------------------------------------------


def _noise_images(n: int) -> list:
    import numpy as np

    return [Image.fromarray((np.random.RandomState(i).rand(32, 32, 3) * 255).astype("uint8")) for i in range(n)]


def test_blip_captioner_prompt_and_seeded_sampling(tmp_path_factory):
    """The processor path (BLIP, as in the GPU example): the prompt is fed and removed from the
    caption; a sampling captioner's caption depends on its seed, not on its batch."""
    from monoculture.loops.image_stages import TransformersCaptioner
    from monoculture.loops.images import CaptionerSpec

    blip = cached_image_model("blip", cache_dir=tmp_path_factory.mktemp("tiny-blip"))
    imgs = _noise_images(3)
    greedy = TransformersCaptioner(CaptionerSpec(model=str(blip), params={"max_new_tokens": 6, "prompt": "A picture of"}), "cpu")
    raw = greedy.tokenizer.batch_decode(
        greedy.model.generate(**greedy._inputs(imgs[:1]), max_new_tokens=6), skip_special_tokens=True
    )
    assert raw[0].startswith("a picture of")  # the model continues the prompt...
    caps = greedy.caption(imgs, [1, 2, 3])
    assert all(c and not c.startswith("a picture of") and raw[0].endswith(caps[0]) for c in caps[:1])  # ...which is removed
    sampler = TransformersCaptioner(CaptionerSpec(model=str(blip), params={"max_new_tokens": 6, "do_sample": True}), "cpu")
    a = sampler.caption(imgs, [11, 12, 13])
    assert a == sampler.caption(imgs, [11, 12, 13])
    assert sampler.caption(imgs[2:], [13]) == a[2:]  # the same seed alone gives the same caption
    assert len(set(sampler.caption(imgs[:1] * 4, [1, 2, 3, 4]))) > 1  # seeds matter
