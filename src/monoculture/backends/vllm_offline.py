"""Offline vLLM: the whole batch of prompts goes to one ``LLM.generate`` call, so the engine's
continuous batching and prefix cache do the scheduling.

Only long-stable vLLM API is used: ``LLM``, ``SamplingParams``, ``LLM.generate`` with token-id
prompts (``{"prompt_token_ids": [...]}``), ``LLM.get_tokenizer`` and
``RequestOutput.outputs[j].text / .token_ids / .finish_reason / .logprobs``,
``RequestOutput.prompt_token_ids / .prompt_logprobs``. Prompts are rendered here with the
tokenizer's chat template (same helper as the transformers backend), so the two backends feed a
model identical token ids and a model moved between them keeps its prompts.

As in the transformers backend, the study's ``Sampling`` is passed in full and the checkpoint's
own sampling defaults are not used (vLLM only applies them when no ``SamplingParams`` is given).

Params: ``dtype`` ("auto"), ``gpu_memory_utilization`` (0.9), ``tensor_parallel_size`` (1),
``seed`` (engine seed, 0), ``trust_remote_code`` (False), ``batch_size`` (jobs per
``generate`` call, 64: results reach the store after each call), ``n_native`` (True: one request
with ``n`` samples per prompt; False: one request per sample, each with its own seed, so that a
sample regenerated alone is identical), ``logprobs`` (top-N logprobs of each answer's first
token, stored in ``Result.logprobs``), and engine options passed through when present:
``max_model_len``, ``enforce_eager``, ``quantization``, ``max_num_seqs``, ``download_dir``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from monoculture.backends.base import Backend, Job, Result, best_logprobs, import_extra
from monoculture.backends.local_common import (
    apply_stop,
    candidate_token_ids,
    encode_jobs,
    encode_prompt,
    engine_seed,
    error_text,
    render_chat,
)
from monoculture.errors import UserError

_PASSTHROUGH = ("max_model_len", "enforce_eager", "quantization", "max_num_seqs", "download_dir")
_TOP_LOGPROBS = 20


@dataclass
class _Request:
    job: Job
    pairs: list[tuple[int, str]]  # (sample index, key) served by this request
    prompt_ids: list[int]
    prompt_format: str
    n: int
    seed: int | None
    shared: bool  # greedy: one completion stands for every sample


class VLLMBackend(Backend):
    name = "vllm"
    supports_logprobs = True
    accepted_params: ClassVar[frozenset[str] | None] = frozenset(
        {
            "dtype",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "seed",
            "trust_remote_code",
            "batch_size",
            "n_native",
            "logprobs",
            *_PASSTHROUGH,
        }
    )
    param_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "batch_size": (1, 100_000),
        "gpu_memory_utilization": (0.01, 1.0),
        "tensor_parallel_size": (1, 1024),
        "logprobs": (0, 100),
        "seed": (-(2**63), 2**63 - 1),
        "max_model_len": (1, 100_000_000),
        "max_num_seqs": (1, 1_000_000),
    }

    def __init__(self, spec):
        super().__init__(spec)
        where = f"model {spec.name!r}"
        vllm = import_extra("vllm", "vllm", spec)
        self._vllm = vllm
        p = dict(spec.params)
        model_ref = spec.model
        if model_ref.startswith(("/", "./", "../", "~")) and not os.path.exists(os.path.expanduser(model_ref)):
            raise UserError(f"model path {model_ref!r} does not exist", where=where)
        try:
            self.batch_size = max(1, int(p.get("batch_size", 64)))
            self.logprobs = int(p.get("logprobs", 0) or 0)
            engine: dict[str, Any] = {
                "model": os.path.expanduser(model_ref),
                "revision": spec.revision,
                "tokenizer_revision": spec.revision,
                "dtype": str(p.get("dtype", "auto")),
                "gpu_memory_utilization": float(p.get("gpu_memory_utilization", 0.9)),
                "tensor_parallel_size": int(p.get("tensor_parallel_size", 1)),
                "seed": int(p.get("seed", 0)),
                "trust_remote_code": bool(p.get("trust_remote_code", False)),
            }
        except (TypeError, ValueError) as e:
            raise UserError(f"bad vllm params: {e}", where=where) from None
        self.n_native = bool(p.get("n_native", True))
        engine.update({k: p[k] for k in _PASSTHROUGH if k in p})
        try:
            self.llm = vllm.LLM(**engine)
        except Exception as e:  # missing weights, no GPU, out of memory: all fixable by the user
            raise UserError(f"vLLM could not load {spec.model!r}: {error_text(e)}", where=where) from None
        self.tokenizer = self.llm.get_tokenizer()

    # -----------------------------------------------------------------------------------------

    def _sampling_params(self, s, n: int, seed: int | None, *, logprobs: int | None = None):
        greedy = s.temperature == 0
        kw: dict[str, Any] = {
            "n": n,
            "temperature": float(s.temperature),
            "top_p": 1.0 if greedy else float(s.top_p),  # older vLLM rejects top_p < 1 when greedy
            "max_tokens": int(s.max_tokens),
            "stop": list(s.stop) or None,
            "seed": None if greedy else seed,
        }
        if logprobs:
            kw["logprobs"] = logprobs
        return self._vllm.SamplingParams(**kw)

    def generate(self, jobs: Iterable[Job]) -> Iterator[Result]:
        chunk: list[Job] = []
        for job in jobs:
            chunk.append(job)
            if len(chunk) >= self.batch_size:
                yield from self._run_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._run_chunk(chunk)

    def _requests(self, job: Job, ids: list[int], fmt: str) -> list[_Request]:
        pairs = list(zip(job.sample_indices, job.keys))
        if job.sampling.temperature == 0:
            # vLLM refuses n > 1 under greedy decoding, and the samples would be identical.
            return [_Request(job, pairs, ids, fmt, 1, None, True)]
        if self.n_native:
            return [_Request(job, pairs, ids, fmt, len(pairs), engine_seed(self.spec, job, pairs[0][0]), False)]
        return [_Request(job, [pair], ids, fmt, 1, engine_seed(self.spec, job, pair[0]), False) for pair in pairs]

    def _run_chunk(self, jobs: list[Job]) -> Iterator[Result]:
        requests: list[_Request] = []
        for item in encode_jobs(self.tokenizer, jobs):
            if isinstance(item, Result):
                yield item
                continue
            requests.extend(self._requests(*item))
        if not requests:
            return
        prompts = [{"prompt_token_ids": r.prompt_ids} for r in requests]
        params = [self._sampling_params(r.job.sampling, r.n, r.seed, logprobs=self.logprobs or None) for r in requests]
        t0 = time.perf_counter()
        try:
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
        except Exception as e:
            err = error_text(e)
            latency = time.perf_counter() - t0
            for r in requests:
                for i, key in r.pairs:
                    yield Result(key=key, sample_index=i, error=err, latency_s=latency)
            return
        latency = time.perf_counter() - t0
        for r, out in zip(requests, outputs):
            completions = sorted(out.outputs, key=lambda c: getattr(c, "index", 0))
            prompt_tokens = len(out.prompt_token_ids) if out.prompt_token_ids is not None else len(r.prompt_ids)
            if r.shared:
                mode = "single"
            elif self.n_native and r.n > 1:
                mode = "native"
            else:
                mode = "emulated" if len(r.job.sample_indices) > 1 else "single"
            for j, (i, key) in enumerate(r.pairs):
                c = completions[0] if r.shared and completions else (completions[j] if j < len(completions) else None)
                if c is None:
                    yield Result(
                        key=key, sample_index=i, error=f"vLLM returned {len(completions)} of {r.n} samples", latency_s=latency
                    )
                    continue
                text, hit = apply_stop(c.text or "", list(r.job.sampling.stop))
                meta: dict[str, Any] = {"prompt_format": r.prompt_format, "batch_requests": len(requests)}
                if r.seed is not None:
                    meta.update(engine_seed=r.seed, n=r.n, n_position=j)
                yield Result(
                    key=key,
                    sample_index=i,
                    text=text,
                    finish_reason="stop" if hit else (c.finish_reason or "length"),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(c.token_ids),
                    latency_s=latency,
                    n_mode=mode,
                    logprobs=self._first_logprobs(c) if self.logprobs else None,
                    meta=meta,
                )

    def _first_logprobs(self, completion) -> dict[str, float] | None:
        steps = getattr(completion, "logprobs", None)
        if not steps:
            return None
        return best_logprobs(
            (getattr(lp, "decoded_token", None) or self.tokenizer.decode([tid]), lp.logprob) for tid, lp in steps[0].items()
        )

    # -----------------------------------------------------------------------------------------

    def first_token_logprobs(
        self, messages: list[dict[str, str]], candidates: list[str], *, assistant_prefix: str = ""
    ) -> dict[str, float]:
        """Top-20 logprobs from one greedy step; a candidate token outside the top 20 is scored
        exactly by appending it to the prompt and reading its prompt logprob, so no candidate
        is left at -inf merely for being unlikely."""
        SamplingParams = self._vllm.SamplingParams
        text, fmt = render_chat(self.tokenizer, messages)
        ids = encode_prompt(self.tokenizer, text + assistant_prefix, fmt)
        cand_tokens = {c: candidate_token_ids(self.tokenizer, c) for c in candidates}
        out = self.llm.generate(
            [{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, temperature=0.0, logprobs=_TOP_LOGPROBS), use_tqdm=False
        )[0]
        steps = out.outputs[0].logprobs or [{}]
        scores = {int(t): float(lp.logprob) for t, lp in steps[0].items()}
        missing = sorted({t for toks in cand_tokens.values() for t in toks} - set(scores))
        if missing:
            probe = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
            outs = self.llm.generate([{"prompt_token_ids": ids + [t]} for t in missing], probe, use_tqdm=False)
            for t, o in zip(missing, outs):
                last = (o.prompt_logprobs or [None])[-1] or {}
                if t in last:
                    scores[t] = float(last[t].logprob)
        return {c: max((scores[t] for t in toks if t in scores), default=float("-inf")) for c, toks in cand_tokens.items()}

    def close(self) -> None:
        if getattr(self, "llm", None) is None:
            return
        self.llm = None
        gc.collect()
        try:  # frees the GPU for the next model in the same process
            from vllm.distributed.parallel_state import (
                destroy_distributed_environment,
                destroy_model_parallel,
            )

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:
            pass
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
