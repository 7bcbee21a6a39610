"""Study spec: one YAML file that says which models answer which prompts, how often, and how.

Validated with pydantic before anything runs; an error names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monoculture.errors import UserError
from monoculture.files import read_utf8


class Sampling(BaseModel):
    """Every parameter that shapes a generation. ``max_tokens`` is always explicit: a server's
    default would make results depend on which server answered."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    seed: int = 0
    system_prompt: str | None = None
    stop: list[str] = Field(default_factory=list)

    def key_params(self) -> dict[str, Any]:
        """The parameters that enter a generation's key (the system prompt enters through the
        rendered messages instead)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop),
        }


class ModelAttributes(BaseModel):
    """Attributes used for groups and lineage; free-form extras are kept."""

    model_config = ConfigDict(extra="allow")

    family: str | None = None
    organisation: str | None = None
    country: str | None = None
    open_weights: bool | None = None
    base_model: str | None = None


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), hide_input_in_errors=True)

    name: str = Field(min_length=1)
    backend: str
    model: str = Field(min_length=1, description="the backend's model id or path")
    revision: str | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="backend options (base_url, api_key_env, batch_size, dtype, device, concurrency, ...)")
    sampling: dict[str, Any] = Field(default_factory=dict, description="per-model overrides of the study's sampling")
    attributes: ModelAttributes = Field(default_factory=ModelAttributes)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from monoculture.backends import available_backends

        names = available_backends()
        if v not in names:
            raise ValueError(f"unknown backend {v!r}; known: {', '.join(sorted(names))}")
        return v

    @field_validator("params")
    @classmethod
    def _no_secrets(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if k.lower() in ("api_key", "apikey", "key", "token", "password", "secret"):
                raise ValueError(f"params.{k}: never put a secret in a study file; put it in an environment variable and name that variable with api_key_env")
        return v

    def identity(self) -> dict[str, Any]:
        """What about the model determines its outputs (enters every generation key). Params
        that only affect speed or transport (batch_size, concurrency, base_url, timeouts, the
        key's variable name) are left out so that moving a model to a faster server reuses work."""
        transport = {"batch_size", "concurrency", "base_url", "api_key_env", "timeout", "max_retries", "device", "n_native", "gpu_memory_utilization", "tensor_parallel_size", "n_ctx", "n_threads", "n_gpu_layers", "device_map"}
        return {
            "backend": self.backend,
            "model": self.model,
            "revision": self.revision,
            "params": {k: v for k, v in sorted(self.params.items()) if k not in transport},
        }


class SuiteRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    limit: int | None = Field(None, ge=1)
    languages: list[str] | None = None


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "study"
    models: list[ModelSpec] = Field(min_length=1)
    suites: list[SuiteRef] = Field(min_length=1)
    samples: int = Field(1, ge=1, description="samples per prompt (k)")
    sampling: Sampling = Field(default_factory=Sampling)
    store: str | None = None
    batch_size: int = Field(16, ge=1, description="generations written per transaction")

    path: Path | None = Field(None, exclude=True)

    @field_validator("suites", mode="before")
    @classmethod
    def _suite_shorthand(cls, v):
        if isinstance(v, list):
            return [{"name": s} if isinstance(s, str) else s for s in v]
        return v

    @model_validator(mode="after")
    def _unique_names(self):
        seen = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"model name {m.name!r} is used twice; names must be unique in a study")
            seen.add(m.name)
        return self

    def sampling_for(self, model: ModelSpec) -> Sampling:
        if not model.sampling:
            return self.sampling
        try:
            return Sampling(**{**self.sampling.model_dump(), **model.sampling})
        except ValidationError as e:
            raise UserError(_format_validation(e, prefix=f"models.{model.name}.sampling"), where=str(self.path or "study")) from None

    def store_path(self, override: str | Path | None = None) -> Path:
        if override:
            return Path(override)
        base = self.path.parent if self.path else Path.cwd()
        if self.store:
            p = Path(self.store)
            return p if p.is_absolute() else base / p
        stem = self.path.stem if self.path else self.name
        return base / f"{stem}.duckdb"

    def load_prompts(self):
        from monoculture.suites import load_suite

        prompts = []
        seen = set()
        for ref in self.suites:
            for p in load_suite(ref.name, limit=ref.limit, languages=ref.languages):
                if p.key not in seen:
                    seen.add(p.key)
                    prompts.append(p)
        return prompts


def _format_validation(e: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if prefix:
            loc = f"{prefix}.{loc}" if loc else prefix
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"field '{loc}': {msg}" if loc else msg)
    return "; ".join(parts)


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; errors name the file and the field."""
    path = Path(path)
    if not path.exists():
        raise UserError("study file not found", where=str(path))
    text = read_utf8(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"malformed YAML: {problem}", where=where) from None
    if not isinstance(data, dict):
        raise UserError("a study must be a YAML mapping (models:, suites:, ...)", where=str(path))
    try:
        study = Study(**data)
    except ValidationError as e:
        raise UserError(_format_validation(e), where=str(path)) from None
    study.path = path.resolve()
    return study
