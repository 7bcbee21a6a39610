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

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


def _no_bool(v: Any) -> Any:
    """YAML reads ``yes`` as a boolean, which pydantic would take as 1 for a number."""
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not {str(v).lower()}")  # noqa: TRY004 - pydantic reports ValueError only
    return v


class _Stage(BaseModel):
    """What every stage has: a name to label chains with, the model (a local folder or a hub
    id), its revision, which implementation runs it (``kind``: a built-in name or
    ``module:Class``) and where (``device``: None picks cuda when there is one)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str | None = Field(None, min_length=1, description="label for chains and reports; default: the model's last path part")
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
        if not self.name:
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

    _numbers = field_validator("steps", "guidance", "height", "width", mode="before")(_no_bool)

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, v: int | None) -> int | None:
        if v is not None and v % 8:
            raise ValueError(f"must be a multiple of 8 (the autoencoder's scale), not {v}")
        return v


class TextToImageSpec(_Stage):
    kind: str = Field("diffusers", description="diffusers (AutoPipelineForText2Image) or module:Class")
    params: TextToImageParams = Field(default_factory=TextToImageParams)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "params": self.params.model_dump()}


class CaptionerParams(BaseModel):
    """How an image is described. Greedy decoding by default, so that a caption is a function
    of its image; ``prompt`` is a text the caption continues (BLIP's conditional captioning)."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(40, ge=1, le=4096)
    num_beams: int = Field(1, ge=1, le=64)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0.0, le=5.0)
    prompt: str | None = None

    _numbers = field_validator("max_new_tokens", "num_beams", "temperature", mode="before")(_no_bool)


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

    _numbers = field_validator("batch_size", mode="before")(_no_bool)


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

    _numbers = field_validator("rounds", "chains", "seed", "batch_size", mode="before")(_no_bool)

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
        for field, stages in (("text_to_image", self.text_to_image), ("captioner", self.captioner)):
            names = [s.name for s in stages]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{field}: name {dup[0]!r} is used twice; give each stage its own name")
        ids = [s.id for s in self.seeds]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"seeds: id {dup[0]!r} is used twice")
        return self

    def pairs(self) -> list[tuple[TextToImageSpec, CaptionerSpec]]:
        """Every (text-to-image, captioner) pair, in spec order."""
        return [(t, c) for t in self.text_to_image for c in self.captioner]
