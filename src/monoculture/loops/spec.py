"""``loops:`` in a study file: which chains to run, how long, and from which seeds.

A study's ``loops:`` section reuses the study's models and sampling, so a loop is measured on
exactly the models the rest of the study compares. Everything is checked while the study file
is loaded (pydantic, errors naming ``loops.<field>``); the seed file and the image section are
read at the same time, so a bad line fails before any store exists.

Fields (all optional; ``loops:`` alone runs the defaults)::

    loops:
      tasks: [rephrase, inspiration, continue]   # or {name, instruction} for your own
      steps: 50                                  # T: generations per chain
      chains: 5                                  # replicates per (seed, task, model), sampling seeds apart
      seeds: shipped                             # or a JSONL path (relative to the study file)
      seed_ids: [story-robot, opinion-rant]      # only these seeds
      models: [a, b]                             # only these of the study's models
      mix: none                                  # none | fixed | random | both
      temperature: 0.8                           # on top of the study's (and each model's) sampling
      max_tokens: 512
      images: {...}                              # an image loop (monoculture.loops.images.ImageLoopSpec)
      summary:                                   # how the loops phase and the report summarise the chains
        embedder: tfidf                          # or none: no drift, convergence, motifs
        scorers: [length, positivity, difficulty]
        x_from: seed                             # or first
        bootstrap: 1000
        seed: 0
        permutations: 999
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monoculture.fields import embedder_name, names, no_bool

#: Bounds that turn a typo into an error naming the field.
MAX_STEPS = 10_000
MAX_CHAINS = 1_000
#: Each replicate's sampling seeds sit this far apart (the step is added to the chain's seed),
#: so no two steps of chains of the same seed, task and model share a seed.
SEED_STRIDE = MAX_STEPS + 1
MAX_TOKENS = 1_048_576


class TaskSpec(BaseModel):
    """A task: its name (how it is reported) and the instruction the model reads before the
    text. Shipped names (rephrase, inspiration, continue) may leave the instruction out."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    instruction: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shipped(cls, v: Any) -> Any:
        from monoculture.loops.seeds import shipped_instructions

        shipped = shipped_instructions()
        if isinstance(v, str):
            if v not in shipped:
                raise ValueError(
                    f"unknown task {v!r}; the shipped tasks are {', '.join(shipped)} (or give {{name, instruction}})"
                )
            return {"name": v, "instruction": shipped[v]}
        if isinstance(v, dict) and "instruction" not in v and v.get("name") in shipped:
            return {**v, "instruction": shipped[v["name"]]}
        return v


class SummarySpec(BaseModel):
    """``loops: summary:``: the settings of the chains' summary, which the study's loops phase
    computes and stores and its report shows (``monoculture loop summary``'s options; the
    defaults are its defaults). Names are checked here without loading anything."""

    model_config = ConfigDict(extra="forbid")

    embedder: str | None = Field("tfidf", min_length=1, description="embedder of drift, convergence, motifs; none: leave out")
    scorers: list[str] = Field(default_factory=lambda: ["length", "positivity", "difficulty"], min_length=1, max_length=50)
    x_from: Literal["seed", "first"] = "seed"
    bootstrap: int = Field(1000, ge=0, le=1_000_000)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    permutations: int = Field(999, ge=0, le=1_000_000)

    _numbers = field_validator("bootstrap", "seed", "permutations", mode="before")(no_bool)
    _lists = field_validator("scorers", mode="before")(names)

    @field_validator("embedder", mode="before")
    @classmethod
    def _none(cls, v: Any) -> Any:
        return None if v is None or (isinstance(v, str) and v.strip().lower() == "none") else v

    _embedder = field_validator("embedder")(embedder_name)

    @field_validator("scorers")
    @classmethod
    def _known_scorers(cls, v: list[str]) -> list[str]:
        import re

        from monoculture.loops.scorers import available_scorers

        known = available_scorers()
        for name in v:
            kind, _, arg = name.partition(":")
            custom = arg and re.fullmatch(r"[A-Za-z_][\w.]*", kind) and re.fullmatch(r"[A-Za-z_][\w.]*", arg)
            if kind not in known and not custom:
                raise ValueError(f"unknown scorer {name!r}; known: {', '.join(sorted(known))}, or module:function")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"scorer {dup[0]!r} is given twice")
        return v

    def settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`monoculture.loops.summary.stored_loop_summary`."""
        return self.model_dump()


def _default_tasks() -> list[TaskSpec]:
    from monoculture.loops.seeds import shipped_instructions

    return [TaskSpec(name=n, instruction=i) for n, i in shipped_instructions().items()]


class LoopsSection(BaseModel):
    """The ``loops:`` section (see the module docstring for the fields)."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskSpec] = Field(
        default_factory=_default_tasks, max_length=100, description="[] runs no text chains (images only)"
    )
    steps: int = Field(50, ge=1, le=MAX_STEPS, description="generations per chain (T)")
    chains: int = Field(
        5, ge=1, le=MAX_CHAINS, description="replicates per (seed, task, model), each with its own sampling seeds"
    )
    seeds: str = Field("shipped", min_length=1, description="'shipped' or a JSONL file of {id, kind, text}")
    seed_ids: list[str] | None = Field(None, min_length=1, description="only these seeds")
    models: list[str] | None = Field(None, min_length=1, description="only these of the study's models (default: all)")
    mix: Literal["none", "fixed", "random", "both"] = Field(
        "none", description="mixed chains besides the single-model ones: the models take turns in a fixed or a random order"
    )
    temperature: float | None = Field(None, ge=0.0, le=5.0)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    images: dict[str, Any] | None = Field(None, description="an image loop: monoculture.loops.images.ImageLoopSpec")
    summary: SummarySpec = Field(default_factory=SummarySpec, description="how the chains are summarised")

    _numbers = field_validator("steps", "chains", "temperature", "max_tokens", mode="before")(no_bool)
    _lists = field_validator("seed_ids", "models", mode="before")(names)

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_list(cls, v: Any) -> Any:
        return names(v)

    @field_validator("tasks")
    @classmethod
    def _unique_tasks(cls, v: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"task {dup[0]!r} is given twice")
        return v

    @field_validator("images")
    @classmethod
    def _image_spec(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        """Validated by the image module's own spec (imported only when the section is there)."""
        if v is None:
            return None
        from pydantic import ValidationError

        from monoculture.loops.images import ImageLoopSpec

        try:
            ImageLoopSpec.model_validate(v)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ValueError(f"{loc}: {first['msg'].removeprefix('Value error, ')}" if loc else first["msg"]) from None
        return v

    @model_validator(mode="after")
    def _something_to_run(self):
        if not self.tasks and self.images is None:
            raise ValueError("tasks: give at least one task (an empty list is only for a section that runs images:)")
        return self

    def image_spec(self):
        """The ``images:`` section as an ImageLoopSpec, or None."""
        if self.images is None:
            return None
        from monoculture.loops.images import ImageLoopSpec

        return ImageLoopSpec.model_validate(self.images)

    @property
    def orders(self) -> list[str]:
        """The mixed orders asked for (``[]`` for ``mix: none``)."""
        return {"none": [], "fixed": ["fixed"], "random": ["random"], "both": ["fixed", "random"]}[self.mix]

    def overrides(self) -> dict[str, Any]:
        """Sampling fields set here, applied on top of each model's sampling."""
        return {k: v for k, v in (("temperature", self.temperature), ("max_tokens", self.max_tokens)) if v is not None}
