"""Generation on a Ray cluster through Ray Data's LLM batch API (``ray.data.llm``, pinned 2.60).

The plan is the single-machine one (:class:`monoculture.collect.Plan`: same keys, same missing
jobs); only the execution moves. Each missing job becomes one dataset row (native n: one request
for all of the job's samples, as the openai backend does) or one row per sample (seed + i), and
``build_processor`` runs them: :class:`~ray.data.llm.HttpRequestProcessorConfig` for
OpenAI-compatible endpoints (``openai`` models), :class:`~ray.data.llm.vLLMEngineProcessorConfig`
for ``vllm`` models that the cluster serves itself (``should_continue_on_error`` on, so one bad
row is recorded instead of failing the dataset; exercised on a GPU only).

Why the driver still decides a few things:

* Ray's HTTP stage retries only transport errors and 408/429/50x; a 500 comes back as the
  server's error body, and an exhausted row fails its whole batch. Retryable failures are
  therefore sent again in another pass (up to the model's ``max_retries``), a failed batch is
  allowed (``max_errored_blocks``) and its rows are simply missing from the pass, so they go
  again too. Only final outcomes are written: a failure is stored once its retries are spent,
  as on one machine.
* Results come back to the driver and are written as Parquet shards, one per batch, then
  merged into the store in transactions (:mod:`monoculture.executors.shards`): a killed driver
  loses at most the batches in flight; the next run merges what was left and sends only what
  is missing.
* The API key is read from the environment on the driver and travels in the stage's request
  headers only, never in a dataset row, a shard or an error text.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monoculture.backends.base import api_key_env, best_logprobs
from monoculture.backends.openai_compat import _MAX_ERROR_CHARS, _MENTIONS_N, DEFAULT_BASE_URL, TOP_LOGPROBS
from monoculture.errors import UserError
from monoculture.executors.shards import merge_shard, write_shard
from monoculture.store import Store
from monoculture.study import ExecutorSection, ModelSpec, Sampling

#: The Ray version whose ``ray.data.llm`` API this module is written and tested against.
RAY_VERSION = "2.60"
#: Error types of an OpenAI-style error body that the same request cannot pass later.
FINAL_ERROR_TYPES = frozenset({"invalid_request_error", "authentication_error", "not_found_error", "permission_error"})
SUPPORTED = ("openai", "vllm")
#: Rows per dataset: the driver holds one window of the plan at a time.
WINDOW = 20_000
#: CPUs Ray reserves for each HTTP worker (an actor that mostly waits on the network).
HTTP_WORKER_CPUS = 0.25


def import_ray():
    """Ray, at the pinned version, or the install hint."""
    try:
        import ray
        import ray.data.llm  # noqa: F401 - the API this executor needs
    except ImportError as e:
        raise UserError(
            f"running on Ray needs the ray extra ({e.name or e}); install it with: pip install 'monoculture[ray]'"
        ) from None
    if not ray.__version__.startswith(RAY_VERSION + "."):
        raise UserError(
            f"monoculture's Ray executor is written for ray {RAY_VERSION}.*, and ray {ray.__version__} is installed; "
            f"install it with: pip install 'monoculture[ray]'"
        )
    return ray


def connect(address: str | None = None, *, show_progress: bool = True):
    """Ray, connected to ``address`` (else RAY_ADDRESS, else a new local cluster), unless this
    process is connected already (a test's ``ray.init(num_cpus=2)``)."""
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = show_progress
    return ray


def check_models(specs: list[ModelSpec]) -> None:
    """Refuse, before anything is written, a model whose backend has no Ray path."""
    for spec in specs:
        if spec.backend not in SUPPORTED:
            raise UserError(
                f"model {spec.name!r}: backend {spec.backend!r} cannot run on Ray (supported: {', '.join(SUPPORTED)}); "
                "run it without --ray, or with --models naming only the others"
            )


@dataclass
class Unit:
    """One dataset row: one request, for one or more samples of one prompt."""

    keys: list[str]
    indices: list[int]
    prompt_key: str
    messages: list[dict[str, str]]
    seed: int
    mode: str  # "native", "emulated" or "single" (the store's n_mode)

    def row(self) -> dict[str, Any]:
        # JSON text for the nested parts: Arrow wants one type per column across rows.
        return {
            "keys": json.dumps(self.keys),
            "indices": json.dumps(self.indices),
            "prompt_key": self.prompt_key,
            "messages": json.dumps(self.messages, ensure_ascii=False),
            "seed": int(self.seed),
            "mode": self.mode,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Unit:
        return cls(
            json.loads(row["keys"]),
            json.loads(row["indices"]),
            row["prompt_key"],
            json.loads(row["messages"]),
            row["seed"],
            row["mode"],
        )

    def emulated(self, base_seed: int) -> list[Unit]:
        mode = "emulated" if len(self.keys) > 1 else "single"
        return [Unit([k], [i], self.prompt_key, self.messages, base_seed + i, mode) for k, i in zip(self.keys, self.indices)]


# ---- row functions (run on the workers: plain functions of plain data) ---------------------------


def _payload(row: dict[str, Any], *, model: str, sampling: dict[str, Any], logprobs: bool) -> dict[str, Any]:
    n = len(json.loads(row["keys"]))
    payload: dict[str, Any] = {
        "model": model,
        "messages": json.loads(row["messages"]),
        "temperature": sampling["temperature"],
        "top_p": sampling["top_p"],
        "max_tokens": sampling["max_tokens"],  # always explicit, as on one machine
        "seed": row["seed"],
    }
    if sampling["stop"]:
        payload["stop"] = list(sampling["stop"])
    if row["mode"] == "native" and n > 1:
        payload["n"] = n
    if logprobs:
        payload["logprobs"] = True
        payload["top_logprobs"] = TOP_LOGPROBS
    return {"payload": payload}


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def _first_logprobs(choice: dict[str, Any]) -> dict[str, float] | None:
    content = (choice.get("logprobs") or {}).get("content") or []
    if not content:
        return None
    first = content[0]
    pairs = [(t["token"], t["logprob"]) for t in first.get("top_logprobs") or [] if t.get("token") is not None]
    if not pairs and first.get("token") is not None:
        pairs = [(first["token"], first["logprob"])]
    return best_logprobs(pairs) or None


def _outcome(row: dict[str, Any], *, logprobs: bool) -> dict[str, Any]:
    """The HTTP response of one row read into per-sample results (JSON text, one column)."""
    keys, indices = json.loads(row["keys"]), json.loads(row["indices"])
    resp = row.get("http_response") or {}
    results: list[dict[str, Any]] = []
    status = "ok"
    err = resp.get("error") if isinstance(resp, dict) else None
    choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index") or 0) if isinstance(resp, dict) else []
    if err is not None or not choices:
        if isinstance(err, dict):
            message, etype, param = str(err.get("message") or ""), err.get("type"), err.get("param")
        else:
            message, etype, param = str(err or "response has no choices"), None, None
        if row["mode"] == "native" and etype == "invalid_request_error" and (param == "n" or _MENTIONS_N.search(message)):
            status = "emulate"  # the server refuses n > 1: one request per sample instead
        else:
            status = "final" if etype in FINAL_ERROR_TYPES else "retry"
        error = _short(f"{etype or 'error'}: {message}" if message else f"{etype or 'error'}")
        results = [{"key": k, "sample_index": i, "error": error} for k, i in zip(keys, indices)]
    elif row["mode"] == "native" and len(choices) < len(keys):
        status = "emulate"  # the server ignored n (Ollama does): redo the job the emulated way
    else:
        usage = resp.get("usage") or {}
        p_tok, c_tok = usage.get("prompt_tokens"), usage.get("completion_tokens")
        n = len(keys)
        for pos, (k, i) in enumerate(zip(keys, indices)):
            choice = choices[pos]
            share = c_tok if n == 1 or c_tok is None else c_tok // n + (1 if pos < c_tok % n else 0)
            content = (choice.get("message") or {}).get("content")
            results.append(
                {
                    "key": k,
                    "sample_index": i,
                    "text": content if content is not None else "",
                    "finish_reason": choice.get("finish_reason"),
                    "prompt_tokens": p_tok,
                    "completion_tokens": share,
                    "logprobs": _first_logprobs(choice) if logprobs else None,
                    "served_model": resp.get("model"),
                }
            )
    return {
        "unit": {k: row[k] for k in ("keys", "indices", "prompt_key", "messages", "seed", "mode")},
        "status": status,
        "results": json.dumps(results),
    }


def _vllm_preprocess(row: dict[str, Any], *, sampling: dict[str, Any]) -> dict[str, Any]:
    greedy = sampling["temperature"] == 0
    params: dict[str, Any] = {
        "n": 1,
        "temperature": float(sampling["temperature"]),
        "top_p": 1.0 if greedy else float(sampling["top_p"]),
        "max_tokens": int(sampling["max_tokens"]),
    }
    if sampling["stop"]:
        params["stop"] = list(sampling["stop"])
    if not greedy:
        params["seed"] = int(row["seed"])
    return {"messages": json.loads(row["messages"]), "sampling_params": params}


def _vllm_outcome(row: dict[str, Any], *, max_tokens: int) -> dict[str, Any]:
    """The engine stage's output row as one result. Ray 2.60's stage keeps the text and token
    counts but not vLLM's finish reason, so it is inferred: "length" when the answer used the
    whole budget, else "stop" (a stop string also ends an answer early)."""
    keys, indices = json.loads(row["keys"]), json.loads(row["indices"])
    n_gen = row.get("num_generated_tokens")
    results = [
        {
            "key": keys[0],
            "sample_index": indices[0],
            "text": row.get("generated_text") or "",
            "finish_reason": "length" if n_gen is not None and n_gen >= max_tokens else "stop",
            "prompt_tokens": row.get("num_input_tokens"),
            "completion_tokens": n_gen,
        }
    ]
    return {
        "unit": {k: row[k] for k in ("keys", "indices", "prompt_key", "messages", "seed", "mode")},
        "status": "ok",
        "results": json.dumps(results),
    }


# ---- the executor -------------------------------------------------------------------------------


@dataclass
class PassResult:
    retry: list[Unit] = field(default_factory=list)
    emulate: list[Unit] = field(default_factory=list)


class RayExecutor:
    """Runs plans on a Ray cluster: ``executor: {kind: ray, address: ...}`` or ``run --ray``."""

    def __init__(self, section: ExecutorSection, shards: Path, *, show_progress: bool = True):
        self.section = section
        self.shards = shards
        self.show_progress = show_progress

    def start(self) -> None:
        """Connect to the cluster (``address``, else RAY_ADDRESS, else a local one), unless this
        process is connected already (a test's ``ray.init(num_cpus=2)``)."""
        ray = connect(self.section.address, show_progress=self.show_progress)
        ray.data.DataContext.get_current().max_errored_blocks = -1  # a failed batch's rows go again in the next pass

    # -- planning --

    @staticmethod
    def units(spec: ModelSpec, jobs, sampling: Sampling) -> Iterator[Unit]:
        """The rows of a chunk of jobs: native n as the openai backend does by default (one
        request, seed of the first missing sample), else one row per sample (seed + i); vllm
        models: one row per sample, its seed mixed as the vllm backend mixes it."""
        if spec.backend == "vllm":
            from monoculture.backends.local_common import engine_seed

            for j in jobs:
                mode = "emulated" if len(j.keys) > 1 else "single"
                for k, i in zip(j.keys, j.sample_indices):
                    yield Unit([k], [i], j.prompt_key, j.messages, engine_seed(spec, j, i), mode)
            return
        native = spec.params.get("n_native", "auto")
        native = native is True or str(native).lower() in ("auto", "true")
        for j in jobs:
            if native and len(j.keys) > 1:
                yield Unit(
                    list(j.keys), list(j.sample_indices), j.prompt_key, j.messages, j.seed_for(j.sample_indices[0]), "native"
                )
            else:
                mode = "emulated" if len(j.keys) > 1 else "single"
                for k, i in zip(j.keys, j.sample_indices):
                    yield Unit([k], [i], j.prompt_key, j.messages, j.seed_for(i), mode)

    # -- processors --

    def _processor(self, spec: ModelSpec, sampling: Sampling):
        from ray.data.llm import HttpRequestProcessorConfig, build_processor, vLLMEngineProcessorConfig

        sp = sampling.key_params()
        workers, batch = self.section.concurrency, self.section.batch_size
        if spec.backend == "vllm":
            p = spec.params
            engine: dict[str, Any] = {"tensor_parallel_size": int(p.get("tensor_parallel_size", 1))}
            for k in (
                "dtype",
                "gpu_memory_utilization",
                "max_model_len",
                "enforce_eager",
                "quantization",
                "max_num_seqs",
                "trust_remote_code",
            ):
                if k in p:
                    engine[k] = p[k]
            if spec.revision:
                engine["revision"] = spec.revision
            engine_config = vLLMEngineProcessorConfig(
                model_source=spec.model,
                engine_kwargs=engine,
                concurrency=workers,
                batch_size=batch,
                should_continue_on_error=True,  # a failed row is recorded with its error, not fatal
            )
            return build_processor(
                engine_config,
                preprocess=functools.partial(_vllm_preprocess, sampling=sp),
                postprocess=functools.partial(_vllm_outcome, max_tokens=sampling.max_tokens),
            )
        import aiohttp

        base_url = str(spec.params.get("base_url") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        var = api_key_env(spec, "OPENAI_API_KEY")
        headers = {}
        if var is not None:
            key = os.environ.get(var)
            if not key:
                raise UserError(f"model {spec.name!r} needs an API key in the environment variable {var}, which is not set")
            headers["Authorization"] = f"Bearer {key}"
        timeout = float(spec.params.get("timeout", 60.0))
        config = HttpRequestProcessorConfig(
            url=base_url + "/chat/completions",
            headers=headers,
            # A fixed pool: an int would make an autoscaling one (1..n) that a short run never grows.
            concurrency=(workers, workers),
            # Waiting on sockets needs little CPU: a whole core per worker would leave none for the
            # postprocess tasks on a small cluster.
            http_request_stage={"num_cpus": HTTP_WORKER_CPUS},
            batch_size=batch,
            max_retries=int(spec.params.get("max_retries", 6)),
            base_retry_wait_time_in_s=0.25,
            session_factory=functools.partial(aiohttp.ClientSession, timeout=aiohttp.ClientTimeout(total=timeout)),
        )
        logprobs = bool(spec.params.get("logprobs", False))
        return build_processor(
            config,
            preprocess=functools.partial(_payload, model=spec.model, sampling=sp, logprobs=logprobs),
            postprocess=functools.partial(_outcome, logprobs=logprobs),
        )

    # -- running --

    def run_plan(self, plan, store: Store, counts: dict[str, int]) -> None:
        """Every missing sample of one plan; final outcomes go to shards, merged as they come.
        The plan's chunks become datasets of at most :data:`WINDOW` rows, so the driver's memory
        does not grow with the study (each dataset costs the start of its workers, so not fewer)."""
        processor = self._processor(plan.spec, plan.sampling)
        window: list[Unit] = []
        for jobs in plan.chunks(store):
            window.extend(self.units(plan.spec, jobs, plan.sampling))
            if len(window) >= WINDOW:
                self._run_units(window, plan, processor, store, counts)
                window = []
        if window:
            self._run_units(window, plan, processor, store, counts)

    def _run_units(self, units: list[Unit], plan, processor, store: Store, counts: dict[str, int]) -> None:
        import ray

        spec, sampling = plan.spec, plan.sampling
        params = {"sampling": sampling.key_params(), "system_prompt": sampling.system_prompt}
        retries = int(spec.params.get("max_retries", 6))
        attempt = 0
        while units:
            attempt += 1
            last = attempt > retries
            sent = {u.keys[0]: u for u in units}
            ds = processor(
                ray.data.from_items([u.row() for u in units], override_num_blocks=max(1, len(units) // self.section.batch_size))
            )
            outcome = PassResult()
            buffer: list[dict] = []
            for row in ds.iter_rows():
                unit = Unit.from_row(row["unit"])
                sent.pop(unit.keys[0], None)
                status = row.get("status", "ok")
                error = row.get("__inference_error__") or ""
                if error:  # a vllm row that failed (should_continue_on_error)
                    results = [{"key": k, "sample_index": i, "error": _short(error)} for k, i in zip(unit.keys, unit.indices)]
                    status = "final"
                else:
                    results = json.loads(row["results"])
                if status == "emulate":
                    outcome.emulate.extend(unit.emulated(sampling.seed))
                    continue
                if status == "retry" and not last:
                    outcome.retry.append(unit)
                    continue
                for r in results:
                    buffer.append(_store_row(spec.name, spec.model, unit, r, params, attempt))
                    counts["generated" if r.get("error") is None else "failed"] += 1
                if len(buffer) >= self.section.batch_size:
                    self._flush(store, buffer)
                    buffer = []
            lost = list(sent.values())  # rows of a batch that failed as a whole
            if last:
                err = {"error": "lost on the Ray cluster: its batch failed after every retry"}
                for u in lost:
                    for k, i in zip(u.keys, u.indices):
                        buffer.append(_store_row(spec.name, spec.model, u, {"key": k, "sample_index": i, **err}, params, attempt))
                        counts["failed"] += 1
                lost = []
            self._flush(store, buffer)
            units = outcome.retry + outcome.emulate + lost

    def _flush(self, store: Store, rows: list[dict]) -> None:
        shard = write_shard(self.shards, rows)
        if shard is not None:
            merge_shard(store, shard)


def _store_row(model: str, served_as: str, unit: Unit, r: dict[str, Any], params: dict, passes: int) -> dict[str, Any]:
    ok = r.get("error") is None
    meta: dict[str, Any] = {"executor": "ray", "passes": passes}
    if unit.mode == "native":
        meta.update(usage_scope="request", request_n=len(unit.keys), completion_tokens_split="even")
    if r.get("served_model") and r["served_model"] != served_as:
        meta["served_model"] = r["served_model"]  # hosted APIs resolve aliases to dated snapshots
    return {
        "key": r["key"],
        "model": model,
        "prompt_key": unit.prompt_key,
        "sample_index": int(r["sample_index"]),
        "text": r.get("text") if ok else None,
        "finish_reason": r.get("finish_reason") if ok else None,
        "prompt_tokens": r.get("prompt_tokens") if ok else None,
        "completion_tokens": r.get("completion_tokens") if ok else None,
        "latency_s": None,
        "error": None if ok else r["error"],
        "n_mode": unit.mode,
        "logprobs": r.get("logprobs") if ok else None,
        "params": {**params, "meta": meta},
        "source": "run",
        "attempts": 1,
    }
