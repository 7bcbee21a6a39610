"""GGUF models through llama-cpp-python, for quantised models on CPUs and small GPUs.

One ``create_chat_completion`` per sample, each with its own seed: llama.cpp decodes one
sequence at a time in this binding, so there is no batch to gain, and per-sample seeds keep
each sample reproducible alone. llama-cpp-python's sampling defaults (top_k=40, min_p=0.05)
are switched off explicitly, so that the study's temperature and top_p mean what they mean on
every other backend.

``spec.model`` is the path of a local .gguf file. Params: ``n_ctx`` (4096), ``n_threads``
(the usable cores), ``n_gpu_layers`` (0; -1 for all), ``seed`` (engine default seed; every
request passes its own anyway), ``chat_format`` (override the format guessed from the GGUF),
``logprobs`` (top-N logprobs of each answer's first token, in ``Result.logprobs``; needs
``logits_all``, which costs n_ctx x vocabulary floats of memory, so it is off by default).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from monoculture.backends.base import Backend, Job, Result, best_logprobs, import_extra
from monoculture.backends.local_common import (
    apply_stop,
    engine_seed,
    error_text,
    plain_render,
    usable_cpus,
)
from monoculture.errors import UserError


class LlamaCppBackend(Backend):
    name = "llamacpp"
    supports_logprobs = True
    accepted_params: ClassVar[frozenset[str] | None] = frozenset(
        {"n_ctx", "n_threads", "n_gpu_layers", "seed", "chat_format", "logprobs"}
    )
    param_ranges: ClassVar[dict[str, tuple[float, float]]] = {
        "n_ctx": (1, 100_000_000),
        "n_threads": (1, 4096),
        "n_gpu_layers": (-1, 100_000),
        "logprobs": (0, 100),
        "seed": (-(2**63), 2**63 - 1),
    }

    def __init__(self, spec):
        super().__init__(spec)
        where = f"model {spec.name!r}"
        llama_cpp = import_extra("llama_cpp", "llamacpp", spec)
        self._llama_cpp = llama_cpp
        path = os.path.expanduser(spec.model)
        if not os.path.isfile(path):
            raise UserError(
                f"GGUF file {spec.model!r} does not exist (the llamacpp backend loads a local .gguf file)", where=where
            )
        p = dict(spec.params)
        try:
            self.logprobs = int(p.get("logprobs", 0) or 0)
            kw: dict[str, Any] = {
                "model_path": path,
                "n_ctx": int(p.get("n_ctx", 4096)),
                "n_threads": int(p.get("n_threads") or usable_cpus()),
                "n_gpu_layers": int(p.get("n_gpu_layers", 0)),
                "seed": int(p.get("seed", 1)),
                "logits_all": bool(self.logprobs),
                "verbose": False,
            }
        except (TypeError, ValueError) as e:
            raise UserError(f"bad llamacpp params: {e}", where=where) from None
        if p.get("chat_format"):
            kw["chat_format"] = str(p["chat_format"])
        try:
            self.llm = llama_cpp.Llama(**kw)
        except Exception as e:  # not a GGUF, unsupported architecture, out of memory
            raise UserError(f"llama.cpp could not load {spec.model!r}: {error_text(e)}", where=where) from None

    # -----------------------------------------------------------------------------------------

    def generate(self, jobs: Iterable[Job]) -> Iterator[Result]:
        for job in jobs:
            s = job.sampling
            pairs = list(zip(job.sample_indices, job.keys))
            if s.temperature == 0:
                # Greedy decoding is deterministic: one completion serves every sample.
                yield from self._complete(job, pairs, None)
            else:
                for pair in pairs:
                    yield from self._complete(job, [pair], engine_seed(self.spec, job, pair[0], bits=31))

    def _complete(self, job: Job, pairs: list[tuple[int, str]], seed: int | None) -> Iterator[Result]:
        s = job.sampling
        kw: dict[str, Any] = {
            "messages": job.messages,
            "temperature": float(s.temperature),
            "top_p": float(s.top_p),
            "top_k": 0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "max_tokens": int(s.max_tokens),
            "stop": list(s.stop),
        }
        if seed is not None:
            kw["seed"] = seed
        if self.logprobs:
            kw.update(logprobs=True, top_logprobs=self.logprobs)
        t0 = time.perf_counter()
        try:
            resp = self.llm.create_chat_completion(**kw)
            choice = resp["choices"][0]
            text, hit = apply_stop(choice["message"].get("content") or "", list(s.stop))
            usage = resp.get("usage") or {}
            reason = "stop" if hit else (choice.get("finish_reason") or "length")
            logprobs = self._first_logprobs(choice) if self.logprobs else None
        except Exception as e:
            latency = time.perf_counter() - t0
            for i, key in pairs:
                yield Result(key=key, sample_index=i, error=error_text(e), latency_s=latency)
            return
        latency = time.perf_counter() - t0
        meta: dict[str, Any] = {"chat_format": getattr(self.llm, "chat_format", None)}
        if seed is not None:
            meta["engine_seed"] = seed
        else:
            meta["greedy_shared"] = len(pairs) > 1
        for i, key in pairs:
            yield Result(
                key=key,
                sample_index=i,
                text=text,
                finish_reason=reason,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                latency_s=latency,
                n_mode="single",
                logprobs=logprobs,
                meta=dict(meta),
            )

    @staticmethod
    def _first_logprobs(choice) -> dict[str, float] | None:
        content = (choice.get("logprobs") or {}).get("content") or []
        if not content:
            return None
        return best_logprobs((t["token"], t["logprob"]) for t in content[0].get("top_logprobs") or [])

    # -----------------------------------------------------------------------------------------

    def _render(self, messages: list[dict[str, str]]) -> str:
        """The GGUF's own chat template when it has one (what create_chat_completion uses for
        most modern GGUFs); otherwise the plain rendering, since llama-cpp-python's built-in
        formats do not expose their prompt text."""
        template = (getattr(self.llm, "metadata", None) or {}).get("tokenizer.chat_template")
        if not template:
            return plain_render(messages)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.llm.token_eos()),
            bos_token=self._token_text(self.llm.token_bos()),
            add_generation_prompt=True,
        )
        # llama_cpp types messages as its TypedDicts; ours are plain role/content dicts of that shape
        return formatter(messages=messages).prompt  # type: ignore[arg-type,unused-ignore]

    def _token_text(self, token: int) -> str:
        if token is None or token < 0:
            return ""
        try:
            return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")
        except TypeError:  # llama-cpp-python before `special=`
            return self.llm.detokenize([token]).decode("utf-8", errors="ignore")

    def _tokens(self, text: str, *, prompt: bool) -> list[int]:
        toks = list(self.llm.tokenize(text.encode("utf-8"), add_bos=prompt, special=prompt))
        bos = self.llm.token_bos()
        if prompt and len(toks) >= 2 and toks[0] == toks[1] == bos:
            toks = toks[1:]  # the template wrote its own BOS
        return toks

    def first_token_logprobs(
        self, messages: list[dict[str, str]], candidates: list[str], *, assistant_prefix: str = ""
    ) -> dict[str, float]:
        """Exact log-softmax over the whole vocabulary at the answer's first position (one
        evaluation, no sampling), so every candidate gets a finite score, not only the top 20."""
        import numpy as np

        ids = self._tokens(self._render(messages) + assistant_prefix, prompt=True)
        self.llm.reset()
        self.llm.eval(ids)
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.array(np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),)), dtype=np.float64)
        m = logits.max()
        logprobs = logits - m - np.log(np.exp(logits - m).sum())
        out: dict[str, float] = {}
        for cand in candidates:
            if not cand:
                raise ValueError("empty candidate string")
            firsts = []
            for variant in (cand, " " + cand.lstrip()):
                toks = self._tokens(variant, prompt=False)
                if not toks:
                    continue
                piece = self.llm.detokenize([toks[0]]).decode("utf-8", errors="ignore").strip()
                if piece and (cand.strip().startswith(piece) or piece.startswith(cand.strip())):
                    firsts.append(toks[0])
            if not firsts:
                toks = self._tokens(cand, prompt=False)
                firsts = toks[:1]
            out[cand] = max((float(logprobs[t]) for t in firsts), default=float("-inf"))
        return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        self.llm = None
        closer = getattr(llm, "close", None)
        if callable(closer):
            try:
                closer()
            except Exception:
                pass
        del llm
        gc.collect()
