"""Image loops: image -> caption -> image, after Hintze et al. (2025).

A chain starts from a prompt; at each round a text-to-image model draws the previous caption
(the seed prompt at round 1) and a captioner describes the picture; the caption is the next
round's prompt. Hintze et al. ran 100 rounds and found that chains from very different prompts
end in a dozen generic motifs (stormy lighthouses, gothic cathedrals, pastoral landscapes).

This module holds the ``images:`` section of a study's ``loops:`` (:class:`ImageLoopSpec`), the
runner (:func:`run_image_loops`) that advances the chains through the loop tables, and
:func:`image_summary`, which measures them: CLIP drift, convergence and motifs on the images,
and the caption chain measured as text. The models themselves are pluggable stages
(:mod:`monoculture.loops.image_stages`); nothing here imports torch until a chain runs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monoculture.fields import no_bool
from monoculture.hashing import digest
from monoculture.loops.tables import Chain, chain_progress, read_steps, register_chains, step_key, write_steps
from monoculture.store import Store

if TYPE_CHECKING:
    from rich.console import Console

#: Upper bounds that turn a typo into an error naming the field rather than a run that never ends.
MAX_ROUNDS = 10_000
MAX_CHAINS = 1_000
MAX_PIXELS = 4096
MAX_SEED = 2**62

#: The CLIP model image chains are embedded with unless the spec names another (Hintze et al.
#: measured with CLIP too; ViT-L/14 is the one most studies report).
DEFAULT_CLIP = "openai/clip-vit-large-patch14"

#: Starting prompts shipped for image chains, written by this team: concrete, varied scenes
#: (indoor and outdoor, people and objects, photo and drawing, odd and ordinary), so that a
#: chain's drift toward a generic motif is visible against where it started.
IMAGE_SEEDS: list[dict[str, str]] = [
    {"id": "img-market", "text": "A crowded night market in the rain, with paper lanterns and steam rising from food stalls."},
    {"id": "img-kitchen", "text": "A child's drawing of a green dog, stuck to a refrigerator door with a banana magnet."},
    {"id": "img-tram", "text": "An empty yellow tram waiting at a snowy terminus at dawn."},
    {"id": "img-chess", "text": "Two old women playing chess on a park bench, one of them laughing."},
    {"id": "img-repair", "text": "A close-up of hands repairing a broken bicycle chain on a workbench covered in oil."},
    {"id": "img-desert", "text": "A red pickup truck parked beside a lone cactus under a purple evening sky."},
    {"id": "img-library", "text": "A cat asleep on a pile of open books in a cluttered university library."},
    {"id": "img-harbour", "text": "Fishing boats painted blue and white in a small harbour at low tide."},
    {"id": "img-robot", "text": "A cardboard robot costume hanging on a coat hook in a school hallway."},
    {"id": "img-soup", "text": "A bowl of tomato soup with a spoon, photographed from directly above on a wooden table."},
    {"id": "img-concert", "text": "A brass band marching through a village street during a summer festival."},
    {"id": "img-lab", "text": "A chemistry lab bench with colourful flasks, a notebook and a half-eaten sandwich."},
]


class _Stage(BaseModel):
    """What every stage has: a name to label chains with, the model (a local folder or a hub
    id), its revision, which implementation runs it (``kind``: a built-in name or
    ``module:Class``) and where (``device``: None picks cuda when there is one)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field("", description="label for chains and reports; default: the model's last path part")
    model: str = Field(min_length=1, description="local folder or hub id")
    revision: str | None = None
    kind: str = Field("", description="implementation: a built-in name or module:Class")
    dtype: str = Field("auto", description="auto (float16 on cuda, else float32), float32, float16 or bfloat16")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"unknown dtype {v!r}; use auto, float32, float16 or bfloat16")
        return v

    @model_validator(mode="after")
    def _default_name(self):
        if not self.name.strip():
            self.name = self.model.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1] or self.model
        return self

    def identity(self) -> dict[str, Any]:
        """What determines the stage's outputs (enters the chain identity): not its name nor
        where it runs."""
        return {"kind": self.kind, "model": self.model, "revision": self.revision, "dtype": self.dtype}


class TextToImageParams(BaseModel):
    """How an image is drawn. ``steps`` and ``guidance`` are diffusers' ``num_inference_steps``
    and ``guidance_scale``; height and width None keep the pipeline's own size."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(30, ge=1, le=1000)
    guidance: float = Field(7.5, ge=0.0, le=100.0)
    height: int | None = Field(None, ge=8, le=MAX_PIXELS)
    width: int | None = Field(None, ge=8, le=MAX_PIXELS)
    negative_prompt: str | None = None

    _numbers = field_validator("steps", "guidance", "height", "width", mode="before")(no_bool)

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (the autoencoder's scale), not {v}")
        return v


class TextToImageSpec(_Stage):
    kind: str = Field("diffusers", description="diffusers (AutoPipelineForText2Image) or module:Class")
    variant: str | None = Field(None, min_length=1, description="the checkpoint's weight variant to download, e.g. fp16")
    params: TextToImageParams = Field(default_factory=TextToImageParams)

    def identity(self) -> dict[str, Any]:
        ident = {**super().identity(), "params": self.params.model_dump()}
        if self.variant:  # only when set, so chains without one keep their ids
            ident["variant"] = self.variant
        return ident


class CaptionerParams(BaseModel):
    """How an image is described. Greedy decoding by default, so that a caption is a function
    of its image; ``prompt`` is a text the caption continues (BLIP's conditional captioning)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(40, ge=1, le=4096)
    num_beams: int = Field(1, ge=1, le=64)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0.0, le=5.0)
    prompt: str | None = None

    _numbers = field_validator("max_new_tokens", "num_beams", "temperature", mode="before")(no_bool)


class CaptionerSpec(_Stage):
    kind: str = Field("transformers", description="transformers (image-to-text: VisionEncoderDecoder, BLIP, ...) or module:Class")
    params: CaptionerParams = Field(default_factory=CaptionerParams)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "params": self.params.model_dump()}


class ImageEmbedderSpec(BaseModel):
    """The CLIP model whose image (and text) features measure the chains."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(DEFAULT_CLIP, min_length=1)
    revision: str | None = None
    batch_size: int = Field(16, ge=1, le=4096)

    _numbers = field_validator("batch_size", mode="before")(no_bool)


class ImageSeed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)


class ImageLoopSpec(BaseModel):
    """``loops: images:`` in a study file. Every (text-to-image, captioner) pair runs
    ``chains`` chains per seed prompt for ``rounds`` rounds. ``seeds`` are prompt texts (or
    ``{id, text}``); left out, the shipped :data:`IMAGE_SEEDS`."""

    model_config = ConfigDict(extra="forbid")

    text_to_image: list[TextToImageSpec] = Field(min_length=1)
    captioner: list[CaptionerSpec] = Field(min_length=1)
    embedder: ImageEmbedderSpec = Field(default_factory=ImageEmbedderSpec)
    rounds: int = Field(100, ge=1, le=MAX_ROUNDS)
    chains: int = Field(1, ge=1, le=MAX_CHAINS, description="chains per (seed, pipeline pair), each with its own sampling seed")
    seeds: list[ImageSeed] = Field(default_factory=lambda: [ImageSeed(**s) for s in IMAGE_SEEDS], min_length=1)
    seed: int = Field(0, ge=-MAX_SEED, le=MAX_SEED, description="base of every image's noise seed")
    device: str | None = Field(None, description="cuda, cuda:1, cpu, mps; None: cuda when available")
    batch_size: int = Field(8, ge=1, le=1024, description="chains drawn and captioned together in one round")

    _numbers = field_validator("rounds", "chains", "seed", "batch_size", mode="before")(no_bool)

    @field_validator("text_to_image", "captioner", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        """One stage or a list of them; a bare string is the model."""
        items = v if isinstance(v, list) else [v]
        return [{"model": x} if isinstance(x, str) else x for x in items]

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_texts(cls, v: Any) -> Any:
        """Plain strings get ids from their position (``seed-01``...)."""
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list):
            return [{"id": f"seed-{i + 1:02d}", "text": s} if isinstance(s, str) else s for i, s in enumerate(v)]
        return v

    @model_validator(mode="after")
    def _unique(self):
        for section, stages in (("text_to_image", self.text_to_image), ("captioner", self.captioner)):
            names = [s.name for s in stages]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{section}: name {dup[0]!r} is used twice; give each stage its own name")
        ids = [s.id for s in self.seeds]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"seeds: id {dup[0]!r} is used twice")
        return self

    def pairs(self) -> list[tuple[TextToImageSpec, CaptionerSpec]]:
        """Every (text-to-image, captioner) pair, in spec order."""
        return [(t, c) for t in self.text_to_image for c in self.captioner]


# ---------------------------------------------------------------------------------------------
# Chains and the runner

#: The task name image chains are stored under (text chains have rephrase, inspiration, ...).
IMAGE_TASK = "image-caption"


def pair_label(t2i: TextToImageSpec, cap: CaptionerSpec) -> str:
    """The name an image chain is measured under: both stages, drawing model first."""
    return f"{t2i.name}+{cap.name}"


def plan_image_chains(spec: ImageLoopSpec) -> list[Chain]:
    """Every chain the spec asks for: per (text-to-image, captioner) pair, seed prompt and
    replicate. The identity holds both stages' identities and parameters and the base seed, not
    the number of rounds, so raising ``rounds`` continues the chains."""
    chains = []
    for t2i, cap in spec.pairs():
        for s in spec.seeds:
            for r in range(spec.chains):
                chains.append(
                    Chain(
                        kind="image",
                        task=IMAGE_TASK,
                        instruction=cap.params.prompt or "",
                        seed_id=s.id,
                        seed_text=s.text,
                        models=[t2i.name, cap.name],
                        identities=[t2i.identity(), cap.identity()],
                        order_kind="fixed",
                        replicate=r,
                        sampling={"seed": spec.seed},
                        steps=spec.rounds,
                        source="run",
                        label=pair_label(t2i, cap),
                    )
                )
    return chains


def round_seed(chain_id: str, step: int, stage: str) -> int:
    """The noise (or sampling) seed of one stage at one round of one chain: a function of the
    chain and the round only, so a resumed chain draws what an uninterrupted one would."""
    return int(digest({"chain": chain_id, "round": int(step), "stage": stage}, length=15), 16)


@dataclass
class ImageLoopOutcome:
    """What a run of the image section did. ``failed`` counts failed rounds (each stopped its
    chain for this run; they are stored and retried by the next run)."""

    chains: int = 0
    planned: int = 0  # rounds all chains have when finished
    generated: int = 0
    skipped: int = 0  # rounds already in the store
    failed: int = 0
    empty: int = 0  # rounds whose caption is empty
    finished: int = 0  # chains at their planned length after this run
    embedded: int = 0  # images and captions newly embedded with CLIP
    errors: list[str] = field(default_factory=list)  # the first few failure messages

    def describe(self) -> str:
        parts = [f"{self.chains} image chains", f"{self.generated} rounds drawn and captioned", f"{self.skipped} already stored"]
        if self.failed:
            parts.append(f"{self.failed} failed (retried next run)")
        if self.empty:
            parts.append(f"{self.empty} empty captions")
        parts.append(f"{self.finished}/{self.chains} chains finished")
        return ", ".join(parts)


@dataclass
class _ChainState:
    chain: Chain
    done: int
    text: str  # the caption the next round draws (the seed prompt before round 1)
    key: str  # the key of the last stored round ("" before round 1)
    failed: bool = False


def preflight_images(spec: ImageLoopSpec) -> None:
    """What can be checked without loading a model, before anything is written: each stage's
    kind names an importable class, local model folders exist, the device is there, and the
    image stack (diffusers, transformers, Pillow) is installed. Raises UserError naming the
    field."""
    import importlib.util

    from monoculture.errors import UserError
    from monoculture.loops.image_stages import CAPTIONERS, TEXT_TO_IMAGE, model_ref, resolve_device, stage_class

    for module in ("torch", "transformers", "PIL", "diffusers"):
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"image loops need {module}, not installed here: pip install 'monoculture[images]'", where="loops.images"
            )
    resolve_device(spec.device)
    for i, t in enumerate(spec.text_to_image):
        where = f"loops.images.text_to_image.{i}"
        stage_class(t.kind, TEXT_TO_IMAGE, "monoculture.text_to_image", where)
        model_ref(t.model, where)
    for i, c in enumerate(spec.captioner):
        where = f"loops.images.captioner.{i}"
        stage_class(c.kind, CAPTIONERS, "monoculture.captioners", where)
        model_ref(c.model, where)
    model_ref(spec.embedder.model, "loops.images.embedder")


def run_image_loops(
    store: Store,
    study: str | None,
    spec: ImageLoopSpec,
    *,
    console: Console | None = None,
    show_progress: bool = True,
) -> ImageLoopOutcome:
    """Advance every image chain of ``spec`` to ``spec.rounds`` rounds, resumably.

    Per (text-to-image, captioner) pair, the chains still short of their length advance
    together, ``batch_size`` at a time: draw each chain's last caption, caption the images,
    write the round's rows in one transaction (a kill loses at most that batch). A batch that
    raises is stored as failed rows (the error, no text) for its chains, which stop for this
    run and are retried by the next. Finally every stored image and caption of these chains is
    embedded with CLIP into the store's embedding cache, so that :func:`image_summary` needs
    no model."""

    from monoculture.loops.image_stages import make_captioner, make_text_to_image, resolve_device
    from monoculture.terminal import stderr_console, work_progress

    console = console or stderr_console()
    preflight_images(spec)  # before the first write
    device = resolve_device(spec.device)
    chains = plan_image_chains(spec)
    ids = register_chains(store, study, chains)
    progress_rows = chain_progress(store, ids)
    out = ImageLoopOutcome(chains=len(chains), planned=len(chains) * spec.rounds)
    states: dict[str, list[_ChainState]] = {}
    for c in chains:
        prefix = progress_rows.get(c.chain_id, [])[: spec.rounds]
        last = prefix[-1] if prefix else None
        s = _ChainState(c, len(prefix), last["text"] if last else c.seed_text, last["key"] if last else "")
        out.skipped += s.done
        states.setdefault(c.label, []).append(s)

    with work_progress(console, show_progress) as progress:
        task = progress.add_task("image rounds", total=out.planned, completed=out.skipped)
        loaded_t2i: dict[str, Any] = {}
        for t2i_spec, cap_spec in spec.pairs():
            group = [s for s in states.get(pair_label(t2i_spec, cap_spec), []) if s.done < spec.rounds]
            if not group:
                continue
            for name in [n for n in loaded_t2i if n != t2i_spec.name]:  # one drawing model in memory at a time
                loaded_t2i.pop(name).close()
            if t2i_spec.name not in loaded_t2i:
                loaded_t2i[t2i_spec.name] = make_text_to_image(t2i_spec, device)
            captioner = make_captioner(cap_spec, device)
            try:
                _advance(group, loaded_t2i[t2i_spec.name], captioner, spec, store, out, progress, task)
            finally:
                captioner.close()
        for stage in loaded_t2i.values():
            stage.close()

    out.finished = sum(s.done >= spec.rounds for group in states.values() for s in group)
    out.embedded = embed_image_steps(store, ids, spec.embedder, device=device)
    return out


def _advance(group: list[_ChainState], t2i: Any, captioner: Any, spec: ImageLoopSpec, store: Store, out, progress, task) -> None:
    from monoculture.loops.image_stages import png_bytes

    while True:
        active = [s for s in group if not s.failed and s.done < spec.rounds]
        if not active:
            return
        for i in range(0, len(active), spec.batch_size):
            batch = active[i : i + spec.batch_size]
            steps = [s.done + 1 for s in batch]
            prompts = [s.text for s in batch]
            t0 = time.perf_counter()
            try:
                images = t2i.draw(prompts, [round_seed(s.chain.chain_id, t, "draw") for s, t in zip(batch, steps)])
                if len(images) != len(batch):
                    raise RuntimeError(f"text-to-image returned {len(images)} images for {len(batch)} prompts")
                captions = captioner.caption(images, [round_seed(s.chain.chain_id, t, "caption") for s, t in zip(batch, steps)])
                if len(captions) != len(batch):
                    raise RuntimeError(f"captioner returned {len(captions)} captions for {len(batch)} images")
                pngs: list[bytes | None] = [png_bytes(img) for img in images]
                error = None
            except Exception as e:  # a failed round is a row, retried next run; Ctrl-C is not caught
                error = f"{type(e).__name__}: {e}".strip()[:2000]
                captions, pngs = [None] * len(batch), [None] * len(batch)
            latency = (time.perf_counter() - t0) / len(batch)
            rows = []
            for s, t, caption, png in zip(batch, steps, captions, pngs):
                rows.append(
                    {
                        "key": step_key(s.chain.chain_id, t, s.text),
                        "chain_id": s.chain.chain_id,
                        "step": t,
                        "model": s.chain.label,
                        "input_key": s.key,
                        "text": None if error else " ".join(str(caption).split()),
                        "image": png,
                        "finish_reason": None if error else "stop",
                        "error": error,
                        "latency_s": latency,
                        "attempts": 1,
                    }
                )
            write_steps(store, rows)
            for s, row in zip(batch, rows):
                if error is not None:
                    s.failed = True
                    out.failed += 1
                else:
                    s.done += 1
                    s.text = str(row["text"])
                    s.key = str(row["key"])
                    out.generated += 1
                    out.empty += not row["text"]
                    progress.advance(task, 1)
            if error:
                if len(out.errors) < 5:
                    out.errors.append(error)
                progress.update(task, description=f"image rounds ({out.failed} failed, retried next run)")


# ---------------------------------------------------------------------------------------------
# CLIP vectors, cached in the store


def image_hash(png: bytes) -> str:
    """The cache key of an image's vector (the embeddings table's ``text_hash`` column; the
    prefix keeps it apart from any text's hash)."""
    return "png:" + hashlib.sha256(png).hexdigest()[:28]


#: The same hash as :func:`image_hash`, computed by DuckDB, so that finding which images lack a
#: vector never reads the PNGs out of the store (2,400 SDXL rounds hold gigabytes of them).
IMAGE_HASH_SQL = "'png:' || substr(sha256(image), 1, 28)"


def image_keys(store: Store, step_keys: Sequence[str]) -> dict[str, str]:
    """Step key -> image hash for those of these steps that hold an image."""
    if not step_keys:
        return {}
    keys = pd.DataFrame({"key": list(step_keys)})  # noqa: F841 - read by the SQL
    rows = store.con.execute(
        f"SELECT key, {IMAGE_HASH_SQL} FROM loop_steps WHERE key IN (SELECT key FROM keys) AND image IS NOT NULL"
    ).fetchall()
    return {str(k): str(h) for k, h in rows}


def image_bytes(store: Store, step_keys: Sequence[str]) -> dict[str, bytes]:
    """Step key -> PNG bytes, for the few steps a caller needs the pictures of."""
    if not step_keys:
        return {}
    keys = pd.DataFrame({"key": list(step_keys)})  # noqa: F841 - read by the SQL
    rows = store.con.execute(
        "SELECT key, image FROM loop_steps WHERE key IN (SELECT key FROM keys) AND image IS NOT NULL"
    ).fetchall()
    return {str(k): bytes(b) for k, b in rows}


def embed_image_steps(store: Store, chain_ids: Sequence[str], embedder: ImageEmbedderSpec, *, device: str | None = None) -> int:
    """Embed, with CLIP, every image and caption (and seed prompt) of these chains' stored
    prefixes that the store's embedding cache lacks; returns how many vectors were made. Reads
    only the missing images' bytes, and loads CLIP only when something is missing."""
    from monoculture.embed import EMBED_SCHEMA, _load, _save
    from monoculture.hashing import text_hash
    from monoculture.loops.image_stages import ClipEmbedder, png_image, resolve_device

    store.con.execute(EMBED_SCHEMA)
    clip = ClipEmbedder(embedder, resolve_device(device) if device is None else device)
    frame = read_steps(store, None, kind="image", chain_ids=chain_ids).drop_duplicates(["chain_id", "step"])
    hashes = image_keys(store, [k for k in frame["key"] if k])  # step key -> image hash (step 0, the seed, has no key)
    by_hash = {h: k for k, h in hashes.items()}
    texts = {text_hash(t): t for t in frame["text"].astype(str)}
    made = 0
    have = _load(store, clip.image_name, list(by_hash))
    todo_img = [h for h in by_hash if h not in have]
    todo_txt = [h for h in texts if h not in _load(store, clip.text_name, list(texts))]
    step = max(4 * embedder.batch_size, 64)
    for start in range(0, len(todo_img), step):
        chunk = todo_img[start : start + step]
        data = image_bytes(store, [by_hash[h] for h in chunk])
        X = clip.embed_images([png_image(data[by_hash[h]]) for h in chunk])
        _save(store, clip.image_name, chunk, X, np.zeros(len(chunk), dtype=bool))
        made += len(chunk)
    for start in range(0, len(todo_txt), step):
        chunk = todo_txt[start : start + step]
        X = clip.embed_texts([texts[h] for h in chunk])
        _save(store, clip.text_name, chunk, X, np.zeros(len(chunk), dtype=bool))
        made += len(chunk)
    clip.close()
    return made


def image_summary(store: Store, study: str | None = None, *, seed: int = 0, **kw: Any) -> dict[str, Any] | None:
    """The image chains measured (CLIP drift, convergence, diversity, prompt match and motifs;
    the captions as text; thumbnails), or None when the store has none: see
    :func:`monoculture.loops.image_measures.image_summary` for the keys and options."""
    from monoculture.loops.image_measures import image_summary as summarise

    return summarise(store, study, seed=seed, **kw)
