"""Study spec: one YAML file that says which models answer which prompts, how often, and how.

Validated with pydantic before anything runs; an error names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from monoculture.errors import UserError
from monoculture.fields import embedder_name, names, no_bool
from monoculture.files import read_utf8
from monoculture.loops.spec import LoopsSection
from monoculture.urls import redact, server_identity

# Bounds on sizes, so that a typo (samples: 1000000000000) is an error naming the field instead
# of a run that hangs while memory grows. Each is far above any study this tool is meant for.
MAX_SAMPLES = 10_000
MAX_TOKENS = 1_048_576
MAX_BATCH = 100_000
MAX_SEED = 2**62  # seed + sample index must stay a 64-bit integer for every engine


class Sampling(BaseModel):
    """Every parameter that shapes a generation. ``max_tokens`` is always explicit: a server's
    default would make results depend on which server answered."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1, le=MAX_TOKENS)
    seed: int = Field(0, ge=-MAX_SEED, le=MAX_SEED)
    system_prompt: str | None = None
    stop: list[str] = Field(default_factory=list, max_length=64)

    _numbers = field_validator("temperature", "top_p", "max_tokens", "seed", mode="before")(no_bool)

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
    released: str | None = Field(None, description="release date, YYYY-MM-DD or YYYY-MM (read as the 15th)")

    @field_validator("released", mode="before")
    @classmethod
    def _release_date(cls, v: Any) -> str | None:
        """Kept at the precision given (a month stays a month); trends read it with parse_release."""
        if v is None:
            return None
        from monoculture.trends.dates import normalise_release

        try:
            return normalise_release(v)
        except UserError as e:
            raise ValueError(str(e)) from None


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), hide_input_in_errors=True)

    name: str = Field(min_length=1)
    backend: str
    model: str = Field(min_length=1, description="the backend's model id or path")
    revision: str | None = None
    params: dict[str, Any] = Field(
        default_factory=dict, description="backend options (base_url, api_key_env, batch_size, dtype, device, concurrency, ...)"
    )
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
                raise ValueError(
                    f"params.{k}: never put a secret in a study file; put it in an environment variable and name that variable with api_key_env"
                )
        return v

    def server(self) -> str | None:
        """The server that holds the weights, for backends reached over HTTP: ``params.server``
        when given (a label: give two servers the same one when they serve the same weights, so
        that moving a model between them reuses its work), else ``params.base_url`` normalised and
        without credentials; None when neither is set (the backend's default server;
        $OPENAI_BASE_URL is not counted, being the same for every model of a run)."""
        label = self.params.get("server")
        if label is not None:
            return str(label)
        url = self.params.get("base_url")
        return server_identity(str(url)) if url else None

    def store_row(self) -> dict[str, Any]:
        """The model as the store's ``models`` table holds it (written by ``run`` and ``probe``)."""
        return {
            "name": self.name,
            "backend": self.backend,
            "model_id": self.model,
            "revision": self.revision,
            "identity": self.identity(),
            "attributes": self.attributes.model_dump(exclude_none=True),
            "source": "run",
        }

    def identity(self) -> dict[str, Any]:
        """What about the model determines its outputs (enters every generation key).

        Two servers can serve different weights under one model id (``llama3.2:3b`` on Ollama
        and on llama.cpp), so the server is part of the identity where a model has one
        (:meth:`server`). It is added only then: a model without ``base_url`` keeps the identity,
        and so the keys, it had before servers were counted. Params that only affect speed or
        transport (batch_size, concurrency, timeouts, the key's variable name) are left out, so
        that tuning them reuses work."""
        transport = {
            "batch_size",
            "concurrency",
            "base_url",
            "server",
            "api_key_env",
            "timeout",
            "max_retries",
            "device",
            "n_native",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "n_ctx",
            "n_threads",
            "n_gpu_layers",
            "device_map",
        }
        ident: dict[str, Any] = {
            "backend": self.backend,
            "model": self.model,
            "revision": self.revision,
            "params": redact({k: v for k, v in sorted(self.params.items()) if k not in transport}),
        }
        server = self.server()
        if server is not None:
            ident["server"] = server
        return ident

    def describe(self) -> str:
        """How an error names the model: its name, backend, model id and server."""
        where = f" at {self.server()}" if self.server() else ""
        return f"{self.name!r} ({self.backend} {self.model}{where})"


class SuiteRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    limit: int | None = Field(None, ge=1)
    languages: list[str] | None = None

    _numbers = field_validator("limit", mode="before")(no_bool)


class ProbesSection(BaseModel):
    """``probes:``: the perspective probes ``monoculture study`` runs after collecting, with the
    options of ``monoculture probe``. ``countries`` is relative to the study file."""

    model_config = ConfigDict(extra="forbid")

    suite: str = Field("values", min_length=1, description="multiple-choice suite: 'values' or a .jsonl path")
    method: str = "logprobs"
    countries: str | None = Field(None, description="human reference distributions (file or folder)")
    languages: list[str] | None = None
    samples: int | None = Field(None, ge=1, le=MAX_SAMPLES, description="k answers per item for method 'sample'")
    steer: list[str] = Field(default_factory=list, max_length=1000)

    _numbers = field_validator("samples", mode="before")(no_bool)
    _lists = field_validator("languages", mode="before")(names)

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from monoculture.probes.runner import METHODS

        if v not in METHODS:
            raise ValueError(f"unknown method {v!r}; use {' or '.join(METHODS)}")
        return v

    @field_validator("steer", mode="before")
    @classmethod
    def _steer_list(cls, v: Any) -> Any:
        # one country per entry, never split on commas: a country's name may hold one
        return [v] if isinstance(v, str) else v

    @field_validator("steer")
    @classmethod
    def _steer_unique(cls, v: list[str]) -> list[str]:
        v = [s.strip() for s in v if s.strip()]
        if len(set(v)) != len(v):
            raise ValueError("a country is given twice")
        return v


class MeasureSection(BaseModel):
    """``measure:``: the options of ``monoculture measure`` that a study fixes (``B`` is
    ``n_boot``, the bootstrap resamples, as ``-B`` on the command line)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    embedder: str | None = Field(None, min_length=1)
    groups: list[str] | None = None
    tau: float | None = Field(None, gt=0.0, le=1.0)
    reference: str | None = None
    what_if_removed: list[str] = Field(default_factory=list)
    raw: bool = False
    n_boot: int = Field(1000, ge=1, le=1_000_000, validation_alias=AliasChoices("n_boot", "B", "bootstrap"))
    seed: int = Field(0, ge=-MAX_SEED, le=MAX_SEED)

    _numbers = field_validator("tau", "n_boot", "seed", mode="before")(no_bool)
    _lists = field_validator("groups", "what_if_removed", mode="before")(names)

    _embedder = field_validator("embedder")(embedder_name)


class ReportSection(BaseModel):
    """``report:``: where ``monoculture study`` writes the report (relative to the study file),
    and the options of ``monoculture report``. ``report: out.html`` is short for ``path:``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field("report.html", min_length=1)
    max_prompts: int = Field(100, ge=0, le=1_000_000)
    figures: str | None = Field(None, min_length=1, description="folder: also write each figure as PNG and SVG")

    _numbers = field_validator("max_prompts", mode="before")(no_bool)


#: Sections a study may name that no version of monoculture runs yet: refused with this reason
#: rather than ignored, so that nobody believes a phase ran that did not.
NOT_YET: dict[str, str] = {}


class ExecutorSection(BaseModel):
    """Where the collect phase's generations run: ``local`` (this process, the default) or
    ``ray`` (Ray Data's LLM batch API on a cluster; see docs/scale.md). Only where, never what:
    the executor enters no generation key, so moving a study between them reuses its work."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "ray"] = "local"
    address: str | None = Field(
        None, description="a Ray cluster's address (ray://host:10001, host:6379 or auto); none: RAY_ADDRESS, else a local cluster"
    )
    concurrency: int = Field(2, ge=1, le=4096, description="Ray workers (HTTP stage actors or vLLM engines)")
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="rows per Ray batch, and so per Parquet shard")
    shards: str | None = Field(None, description="the shards folder (default: STORE.shards beside the store)")

    _numbers = field_validator("concurrency", "batch_size", mode="before")(no_bool)


class Study(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "study"
    models: list[ModelSpec] = Field(default_factory=list)
    suites: list[SuiteRef] = Field(default_factory=list, description="prompt suites; a study with loops: may have none")
    samples: int = Field(1, ge=1, le=MAX_SAMPLES, description="samples per prompt (k)")
    sampling: Sampling = Field(default_factory=Sampling)
    store: str | None = None
    batch_size: int = Field(16, ge=1, le=MAX_BATCH, description="generations written per transaction")

    probes: ProbesSection | None = None
    measure: MeasureSection | None = None
    report: ReportSection | None = None
    loops: LoopsSection | None = None
    executor: ExecutorSection = Field(default_factory=ExecutorSection)

    path: Path | None = Field(None, exclude=True)

    _numbers = field_validator("samples", "batch_size", mode="before")(no_bool)

    @model_validator(mode="before")
    @classmethod
    def _sections(cls, data: Any) -> Any:
        """An empty section (``measure:`` alone) asks for the phase with its defaults, so it is
        kept as ``{}``; a section no version runs yet is refused (:data:`NOT_YET`)."""
        if not isinstance(data, dict):
            return data
        for key, why in NOT_YET.items():
            if key in data:
                raise ValueError(f"field '{key}': {why}")
        data = dict(data)
        for key in ("probes", "measure", "report", "loops"):
            if key in data and data[key] is None:
                data[key] = {}
        if isinstance(data.get("report"), str):
            data["report"] = {"path": data["report"]}
        return data

    @field_validator("suites", mode="before")
    @classmethod
    def _suite_shorthand(cls, v):
        if isinstance(v, list):
            return [{"name": s} if isinstance(s, str) else s for s in v]
        return v

    @model_validator(mode="after")
    def _something_to_run(self):
        """Suites may be left out only by a study that runs loops (its chains need no prompts)."""
        if not self.suites and self.loops is None:
            raise ValueError("field 'suites': give at least one suite (only a study with a loops: section may have none)")
        if not self.models and not (self.loops is not None and self.loops.images is not None and not self.loops.tasks):
            raise ValueError(
                "field 'models': give at least one model (only an images-only loops: section, tasks: [], may have none)"
            )
        return self

    @model_validator(mode="after")
    def _loops_models(self):
        """The loop section's model names and mixed chains, against the study's models."""
        if self.loops is None:
            return self
        names = [m.name for m in self.models]
        if not self.loops.tasks:
            return self  # images only: the text models are not used
        chosen = self.loops.models or names
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ValueError(f"field 'loops.models': {unknown[0]!r} is not a model of the study; models: {', '.join(names)}")
        if len(set(chosen)) != len(chosen):
            raise ValueError("field 'loops.models': a model is named twice")
        if self.loops.orders and len(chosen) < 2:
            raise ValueError(f"field 'loops.mix': mixed chains need at least two models; the loops have {len(chosen)}")
        return self

    @model_validator(mode="after")
    def _unique_names(self):
        seen = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"model name {m.name!r} is used twice; names must be unique in a study")
            seen.add(m.name)
        return self

    @model_validator(mode="after")
    def _models_valid(self):
        """Everything about the models that can be checked without running them, so that a
        study is rejected before anything is written: each model's sampling overrides, its
        backend's params, and that no two models would share generation keys."""
        from monoculture.backends import backend_class
        from monoculture.hashing import digest

        owners: dict[str, ModelSpec] = {}
        for i, m in enumerate(self.models):
            try:
                sampling = self._merged_sampling(m)
            except ValidationError as e:
                raise ValueError(_format_validation(e, prefix=f"models.{i}.sampling")) from None
            try:
                cls = backend_class(m.backend)
            except UserError:
                cls = None  # a plugin whose engine is not installed: preflight says so at run time
            if cls is not None:
                try:
                    cls.check_params(m)
                except UserError as e:
                    raise ValueError(f"field 'models.{i}': {e}") from None
            gid = digest({"model": m.identity(), "sampling": sampling.key_params(), "system_prompt": sampling.system_prompt})
            if gid in owners:
                other = owners[gid]
                raise ValueError(
                    f"models {other.describe()} and {m.describe()} have the same identity and sampling, so their answers "
                    "would share generation keys and one would silently take the other's: point them at different servers "
                    "(params.base_url, or params.server to label one), change one's sampling, or remove one"
                )
            owners[gid] = m
        return self

    def _merged_sampling(self, model: ModelSpec) -> Sampling:
        if not model.sampling:
            return self.sampling
        return Sampling(**{**self.sampling.model_dump(), **model.sampling})

    def sampling_for(self, model: ModelSpec) -> Sampling:
        try:
            return self._merged_sampling(model)
        except ValidationError as e:
            raise UserError(
                _format_validation(e, prefix=f"models.{model.name}.sampling"), where=str(self.path or "study")
            ) from None

    def stored_spec(self) -> dict[str, Any]:
        """The spec as it may be written to the store: every URL without its credentials."""
        return redact(self.model_dump(mode="json"))

    def resolve_path(self, value: str | Path) -> Path:
        """A path written in the study file (``countries:``, ``report:``): relative to the
        file's folder, as ``store:`` is, so that a study runs the same from any directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent if self.path else Path.cwd()) / p

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
        study = Study.model_validate(data)
    except ValidationError as e:
        raise UserError(_format_validation(e), where=str(path)) from None
    study.path = path.resolve()
    return study
