"""The model API: one base class, many providers.

A backend receives *jobs*: one prompt with the sample indices still missing for it. Grouping by
prompt lets engines that sample n answers in one call (vLLM, OpenAI-compatible servers) do so,
while per-sample seeds keep every sample reproducible on its own.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from monoculture.errors import UserError
from monoculture.study import ModelSpec, Sampling


def api_key_env(spec: ModelSpec, default: str | None) -> str | None:
    """The variable that holds a model's API key: params.api_key_env, the backend's default, or
    none when the spec says ``api_key_env: none`` (local servers that want no key)."""
    var = spec.params.get("api_key_env", default)
    if var is None or str(var).lower() in ("", "none", "null"):
        return None
    return str(var)


def import_extra(module: str, backend: str, spec: ModelSpec):
    """Import an optional engine inside a backend's ``__init__`` (so the registry can list the
    backend without it), turning its absence into the install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(
            f"backend {backend!r} needs an optional dependency ({e.name or e}); install it with: pip install 'monoculture[{backend}]'",
            where=f"model {spec.name!r}",
        ) from None


def check_number(value: Any, field: str, lo: float, hi: float, *, where: str | None = None) -> float:
    """``value`` if it is a number in [lo, hi] (an integer when both bounds are integers), else
    a UserError naming the field and the range."""
    import math

    want_int = isinstance(lo, int) and isinstance(hi, int)
    ok = not isinstance(value, bool) and isinstance(value, (int, float) if not want_int else int)
    if ok and not want_int:
        ok = math.isfinite(value)
    if not ok or not (lo <= value <= hi):
        kind, fmt = ("an integer", str) if want_int else ("a number", lambda x: f"{x:g}")
        raise UserError(f"{field} must be {kind} from {fmt(lo)} to {fmt(hi)}, got {value!r}", where=where)
    return value


def best_logprobs(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """First-token logprobs as text -> logprob, the likeliest token keeping a text that several
    share. Distinct tokens can decode to the same text (byte-level BPE: every partial UTF-8 byte
    is "\ufffd"; servers list spellings twice), so the entry must not depend on the order the
    engine lists them in. Every backend and the Ray executor read logprobs through this."""
    out: dict[str, float] = {}
    for tok, lp in pairs:
        out[tok] = max(float(lp), out.get(tok, float("-inf")))
    return out


class LogprobsUnavailable(Exception):
    """The backend (or the server behind it) cannot give first-token log-probabilities; the
    probes then tell the user to use sampled answers instead."""


@dataclass
class Job:
    """One prompt for one model, with the samples still to generate."""

    messages: list[dict[str, str]]
    sample_indices: list[int]
    keys: list[str]
    sampling: Sampling
    prompt_key: str = ""

    def seed_for(self, sample_index: int) -> int:
        """Sample i uses seed + i, so that any subset of samples can be regenerated alone."""
        return self.sampling.seed + sample_index


@dataclass
class Result:
    """One generation, successful or not. A failure is data too: it is stored with its error
    and retried on the next run."""

    key: str
    sample_index: int
    text: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    n_mode: str = "single"  # "native" (engine sampled n at once), "emulated" (k requests), "single"
    logprobs: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Backend(ABC):
    """Base class of every model backend.

    Subclasses set ``name`` and implement :meth:`generate`. ``generate`` yields results as they
    complete (in any order): the runner writes them in batches, so a kill loses at most one
    batch. Heavy imports (torch, vllm, llama_cpp) belong inside ``__init__`` so that optional
    extras stay optional.
    """

    name: ClassVar[str]
    supports_logprobs: ClassVar[bool] = False
    #: Environment variable that holds the API key when the spec names none (None: no key).
    default_api_key_env: ClassVar[str | None] = None
    #: The params this backend reads. Every param outside the study's transport list enters the
    #: generation keys, so a misspelt one would silently make new keys while the backend ignored
    #: it: a name outside this set is an error. None (a plugin that declares nothing) accepts any.
    accepted_params: ClassVar[frozenset[str] | None] = None
    #: Numeric params and their allowed range, checked before anything runs. Integer bounds
    #: demand an integer; float bounds accept any finite number.
    param_ranges: ClassVar[dict[str, tuple[float, float]]] = {}

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @classmethod
    def check_params(cls, spec: ModelSpec) -> None:
        """Reject unknown params (naming the field and the nearest known one) and numbers out of
        range. Needs no engine: run while the study is loaded, before anything is written."""
        where = f"model {spec.name!r}"
        if cls.accepted_params is not None:
            for k in spec.params:
                if k not in cls.accepted_params:
                    import difflib

                    close = difflib.get_close_matches(k, sorted(cls.accepted_params), n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise UserError(
                        f"params.{k}: backend {spec.backend!r} has no such param ({hint}it accepts: {', '.join(sorted(cls.accepted_params))})",
                        where=where,
                    )
        for k, (lo, hi) in cls.param_ranges.items():
            if k not in spec.params:
                continue  # null is not "the default": the backends would fail on it after the first write
            check_number(spec.params[k], f"params.{k}", lo, hi, where=where)

    @classmethod
    def preflight(cls, spec: ModelSpec) -> None:
        """Checks that need no model loaded (params, credentials, files), run for every model
        before anything is written, so that a study that cannot finish fails before it starts."""
        cls.check_params(spec)
        var = api_key_env(spec, cls.default_api_key_env)
        if var and not os.environ.get(var):
            raise UserError(f"model {spec.name!r} needs an API key in the environment variable {var}, which is not set")

    @abstractmethod
    def generate(self, jobs: Iterable[Job]) -> Iterator[Result]:
        """Generate every missing sample of every job; never raise for one failed request."""

    def first_token_logprobs(
        self, messages: list[dict[str, str]], candidates: list[str], *, assistant_prefix: str = ""
    ) -> dict[str, float]:
        """Log-probabilities of each candidate string as the first token of the answer.

        Used to read a model's answer distribution over multiple-choice options without
        sampling. Backends that cannot expose logprobs raise :class:`LogprobsUnavailable`."""
        raise LogprobsUnavailable(f"backend {self.name!r} does not expose first-token log-probabilities")

    def close(self) -> None:  # noqa: B027 - optional hook: backends without resources keep this no-op
        """Release engines, sessions and memory."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
