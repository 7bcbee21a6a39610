"""Local Hugging Face models through ``transformers``.

Sampling is done here, not by ``generate``'s samplers: every sample draws from its own
``torch.Generator`` seeded with ``job.seed_for(i)``, so a sample's text does not depend on which
other samples shared its batch (rerunning only the failed samples, or changing ``batch_size``,
gives the same text). ``generate`` still runs the batched, KV-cached decoding; a logits
processor makes the per-row draw and hands ``generate`` a one-hot score that its greedy step
picks up.

The study's ``Sampling`` is the whole sampling specification. A checkpoint's own
``generation_config`` defaults (Qwen ships top_k=20 and repetition_penalty=1.05, for example)
are dropped, except its end-of-sequence tokens: applying them would make one model's answers
depend on its vendor's taste, not on the study.

Params: ``device`` ("auto": cuda if available, else cpu; or any torch device string),
``dtype`` ("auto": the checkpoint's dtype on GPU, float32 on CPU; "float32", "bfloat16",
"float16"), ``batch_size`` (8), ``trust_remote_code`` (False), ``n_threads`` (CPU threads, at
most the cores this process may use), ``device_map`` (passed to ``from_pretrained`` for models
that do not fit on one device; then ``device`` is ignored).

A model that cannot be loaded (missing path, unknown id, broken files) raises
:class:`~monoculture.errors.UserError` when the backend is created, before any generation:
it is a configuration problem, and error results for every prompt would only hide it. Failures
during generation become error results for the batch concerned.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from monoculture.backends.base import Backend, Job, Result
from monoculture.backends.local_common import (
    apply_stop,
    candidate_token_ids,
    encode_jobs,
    encode_prompt,
    engine_seed,
    error_text,
    render_chat,
    usable_cpus,
)
from monoculture.errors import UserError

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_WINDOW_BATCHES = 8  # rows are sorted by length within windows of this many batches


@dataclass
class _Row:
    """One sequence to decode: a sample, or under greedy decoding all samples of a prompt
    (they would be identical, so they are decoded once)."""

    job: Job
    indices: list[int]
    keys: list[str]
    ids: list[int]
    seed: int | None
    prompt_format: str


class TransformersBackend(Backend):
    name = "transformers"
    supports_logprobs = True
    accepted_params: ClassVar[frozenset[str] | None] = frozenset(
        {"device", "dtype", "batch_size", "trust_remote_code", "n_threads", "device_map"}
    )
    param_ranges: ClassVar[dict[str, tuple[float, float]]] = {"batch_size": (1, 4096), "n_threads": (1, 4096)}

    def __init__(self, spec):
        super().__init__(spec)
        try:
            import torch
            import transformers
        except ImportError as e:
            raise UserError(
                f"backend 'transformers' needs an optional dependency ({e.name or e}); "
                "install it with: pip install 'monoculture[transformers]'"
            ) from None
        self._torch = torch
        p = dict(spec.params)
        where = f"model {spec.name!r}"

        dtype = str(p.get("dtype", "auto"))
        if dtype not in _DTYPES:
            raise UserError(f"params.dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}", where=where)
        try:
            self.batch_size = int(p.get("batch_size", 8))
        except (TypeError, ValueError):
            raise UserError(f"params.batch_size must be an integer, not {p.get('batch_size')!r}", where=where) from None
        if self.batch_size < 1:
            raise UserError("params.batch_size must be at least 1", where=where)
        trust = bool(p.get("trust_remote_code", False))
        device_map = p.get("device_map")
        device = str(p.get("device", "auto"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"params.device is {device!r} but torch sees no CUDA device", where=where)

        if device == "cpu" and not device_map:
            # More threads than usable cores only adds contention (torch's default counts the
            # host's cores, not the container's share). The setting is process-wide, so without
            # an explicit n_threads it is only ever lowered, never raised over a caller's choice.
            cap = usable_cpus()
            if p.get("n_threads"):
                try:
                    wanted = int(p["n_threads"])
                except (TypeError, ValueError):
                    raise UserError(f"params.n_threads must be an integer, not {p['n_threads']!r}", where=where) from None
                torch.set_num_threads(max(1, min(wanted, cap)))
            elif torch.get_num_threads() > cap:
                torch.set_num_threads(cap)

        if dtype == "auto":
            torch_dtype: Any = "auto" if device != "cpu" or device_map else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)

        model_ref = spec.model
        looks_local = model_ref.startswith(("/", "./", "../", "~")) or os.path.isabs(model_ref)
        if looks_local and not os.path.exists(os.path.expanduser(model_ref)):
            raise UserError(f"model path {model_ref!r} does not exist", where=where)
        if looks_local:
            model_ref = os.path.expanduser(model_ref)

        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        kw: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": trust}
        dtype_kw = "dtype" if _version_at_least(transformers.__version__, (4, 56)) else "torch_dtype"
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_ref, **kw)
            model_kw = {**kw, dtype_kw: torch_dtype}
            if device_map:
                model_kw["device_map"] = device_map
            model = AutoModelForCausalLM.from_pretrained(model_ref, **model_kw)
        except (
            OSError,
            ValueError,
            KeyError,
            ImportError,
        ) as e:  # missing files, unknown id or architecture, missing tokenizer extra
            raise UserError(f"cannot load model {spec.model!r}: {error_text(e)}", where=where) from None
        if not device_map:
            model.to(device)  # type: ignore[arg-type]  # transformers types .to() through a decorator that wants the model
        model.eval()

        tokenizer.padding_side = "left"  # for anyone who pads with it; generate pads by hand
        eos: list[int] = []
        for src in (getattr(model.generation_config, "eos_token_id", None), model.config.eos_token_id, tokenizer.eos_token_id):
            for t in src if isinstance(src, (list, tuple)) else [src]:
                if t is not None and int(t) not in eos:
                    eos.append(int(t))
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = eos[0] if eos else 0
        self.eos_token_ids = eos
        self.pad_token_id = int(pad)
        self.model_generation_defaults = model.generation_config.to_dict()
        model.generation_config = GenerationConfig(
            eos_token_id=eos or None,
            pad_token_id=self.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
        self.tokenizer = tokenizer
        self.model: Any = model  # None once closed
        self.device = next(model.parameters()).device

    # -----------------------------------------------------------------------------------------

    def generate(self, jobs: Iterable[Job]) -> Iterator[Result]:
        window: list[_Row] = []
        for item in encode_jobs(self.tokenizer, jobs):
            if isinstance(item, Result):
                yield item
                continue
            job, ids, fmt = item
            if job.sampling.temperature == 0:
                window.append(_Row(job, list(job.sample_indices), list(job.keys), ids, None, fmt))
            else:
                for i, key in zip(job.sample_indices, job.keys):
                    window.append(_Row(job, [i], [key], ids, engine_seed(self.spec, job, i), fmt))
            if len(window) >= self.batch_size * _WINDOW_BATCHES:
                yield from self._run_window(window)
                window = []
        if window:
            yield from self._run_window(window)

    def _run_window(self, rows: list[_Row]) -> Iterator[Result]:
        """Batch rows that share sampling settings, longest first: left padding then wastes
        little, and batch composition cannot change a sample's text anyway."""
        groups: dict[tuple, list[_Row]] = {}
        for r in rows:
            s = r.job.sampling
            groups.setdefault((s.temperature, s.top_p, s.max_tokens, tuple(s.stop)), []).append(r)
        for group in groups.values():
            group.sort(key=lambda r: -len(r.ids))
            for start in range(0, len(group), self.batch_size):
                yield from self._run_batch(group[start : start + self.batch_size])

    def _run_batch(self, rows: list[_Row]) -> Iterator[Result]:
        torch = self._torch
        t0 = time.perf_counter()
        try:
            outputs = self._decode(rows)
        except torch.cuda.OutOfMemoryError:
            if len(rows) == 1:
                outputs = None
                err = "CUDA out of memory for a single sequence"
            else:
                gc.collect()
                torch.cuda.empty_cache()
                half = len(rows) // 2
                yield from self._run_batch(rows[:half])
                yield from self._run_batch(rows[half:])
                return
        except Exception as e:
            outputs, err = None, error_text(e)
        latency = time.perf_counter() - t0
        for b, row in enumerate(rows):
            if outputs is None:
                for i, key in zip(row.indices, row.keys):
                    yield Result(key=key, sample_index=i, error=err, latency_s=latency, meta={"prompt_format": row.prompt_format})
                continue
            text, reason, n_completion = outputs[b]
            meta = {"prompt_format": row.prompt_format, "batch_rows": len(rows)}
            if row.seed is None:
                meta["greedy_shared"] = len(row.indices) > 1
            else:
                meta["engine_seed"] = row.seed
            for i, key in zip(row.indices, row.keys):
                yield Result(
                    key=key,
                    sample_index=i,
                    text=text,
                    finish_reason=reason,
                    prompt_tokens=len(row.ids),
                    completion_tokens=n_completion,
                    latency_s=latency,
                    n_mode="single",
                    meta=dict(meta),
                )

    def _decode(self, rows: list[_Row]) -> list[tuple[str, str, int]]:
        torch = self._torch
        from transformers import (
            GenerationConfig,
            LogitsProcessorList,
            StoppingCriteriaList,
        )

        sampling = rows[0].job.sampling
        width = max(len(r.ids) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            input_ids[b, width - len(r.ids) :] = torch.tensor(r.ids, dtype=torch.long)
            mask[b, width - len(r.ids) :] = 1

        processors = LogitsProcessorList()
        if sampling.temperature > 0:
            processors.append(_SeededSampler([r.seed for r in rows], sampling.temperature, sampling.top_p))
        stopper = _StopStrings(self.tokenizer, list(sampling.stop), width, len(rows)) if sampling.stop else None
        config = GenerationConfig(
            max_new_tokens=sampling.max_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self.eos_token_ids or None,
            pad_token_id=self.pad_token_id,
        )
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([stopper] if stopper else []),
            )
        new = out[:, width:].tolist()

        eos = set(self.eos_token_ids)
        results = []
        for b, toks in enumerate(new):
            cut, reason = len(toks), None
            for j, t in enumerate(toks):
                if t in eos:
                    cut, reason = j + 1, "stop"
                    break
            if stopper is not None and stopper.stopped_at[b] is not None and stopper.stopped_at[b] < cut:
                cut, reason = stopper.stopped_at[b], None
            body = [t for t in toks[:cut] if t not in eos]
            text = str(self.tokenizer.decode(body, skip_special_tokens=True))  # one id list decodes to one str
            text, hit = apply_stop(text, list(sampling.stop))
            if hit:
                reason = "stop"
            if reason is None:
                reason = "length" if cut >= sampling.max_tokens else "stop"
            results.append((text, reason, cut))
        return results

    # -----------------------------------------------------------------------------------------

    def first_token_logprobs(
        self, messages: list[dict[str, str]], candidates: list[str], *, assistant_prefix: str = ""
    ) -> dict[str, float]:
        """One forward pass; each candidate scores the best of its first tokens with and
        without a leading space, since where the space goes is the tokenizer's business, not
        the model's choice. Candidates sharing a first token ("Paris", "Pari") score alike."""
        torch = self._torch
        text, fmt = render_chat(self.tokenizer, messages)
        ids = encode_prompt(self.tokenizer, text + assistant_prefix, fmt)
        with torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0, -1]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out: dict[str, float] = {}
        for cand in candidates:
            toks = candidate_token_ids(self.tokenizer, cand)
            out[cand] = max((float(logprobs[t]) for t in toks), default=float("-inf"))
        return out

    def close(self) -> None:
        if getattr(self, "model", None) is None:
            return
        on_cuda = self.device.type == "cuda"
        self.model = None
        gc.collect()
        if on_cuda:
            self._torch.cuda.empty_cache()


def _version_at_least(version: str, wanted: tuple[int, ...]) -> bool:
    parts = []
    for piece in version.split(".")[: len(wanted)]:
        digits = "".join(c for c in piece if c.isdigit()) or "0"
        parts.append(int(digits))
    return tuple(parts) >= wanted


def _torch_classes():
    """LogitsProcessor / StoppingCriteria subclasses need transformers at class-creation time;
    built lazily so that importing this module stays cheap and torch-free."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class SeededSampler(LogitsProcessor):
        """Temperature + nucleus sampling with one generator per row; returns a one-hot score
        so that generate's greedy step takes the drawn token. Draws use the exponential-race
        form of categorical sampling (argmax p/E), one vocabulary-sized draw per row and step,
        so a row's random stream never depends on its neighbours."""

        def __init__(self, seeds, temperature, top_p):
            self.seeds = seeds
            self.temperature = float(temperature)
            self.top_p = float(top_p)
            self.generators = None

        def __call__(self, input_ids, scores):
            if self.generators is None:
                self.generators = [torch.Generator(device=scores.device).manual_seed(int(s)) for s in self.seeds]
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                drop_sorted = (sorted_p.cumsum(dim=-1) - sorted_p) >= self.top_p  # the top token always stays
                drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
                probs = probs.masked_fill(drop, 0.0)
            race = torch.stack(
                [
                    torch.empty(probs.shape[-1], device=probs.device, dtype=torch.float32).exponential_(generator=g)
                    for g in self.generators
                ]
            ).clamp_min_(1e-30)
            choice = (probs / race).argmax(dim=-1)
            out = torch.full_like(scores, float("-inf"))
            out.scatter_(1, choice.unsqueeze(1), 0.0)
            return out

    class StopStrings(StoppingCriteria):
        """Ends a row once its text contains a stop string (the text is cut afterwards). Only
        the tail is decoded at each step, so the cost stays linear in the answer length."""

        def __init__(self, tokenizer, stops, prompt_width, rows):
            self.tokenizer = tokenizer
            self.stops = [s for s in stops if s]
            self.prompt_width = prompt_width
            self.tail = max(len(s) for s in self.stops) + 8
            self.stopped_at: list[int | None] = [None] * rows

        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            n_new = input_ids.shape[1] - self.prompt_width
            for b in range(input_ids.shape[0]):
                if self.stopped_at[b] is not None:
                    done[b] = True
                    continue
                tail = input_ids[b, max(self.prompt_width, input_ids.shape[1] - self.tail) :].tolist()
                text = self.tokenizer.decode(tail, skip_special_tokens=True)
                if any(s in text for s in self.stops):
                    self.stopped_at[b] = n_new
                    done[b] = True
            return done

    return SeededSampler, StopStrings


_CLASSES = None


def _SeededSampler(*args):
    global _CLASSES
    _CLASSES = _CLASSES or _torch_classes()
    return _CLASSES[0](*args)


def _StopStrings(*args):
    global _CLASSES
    _CLASSES = _CLASSES or _torch_classes()
    return _CLASSES[1](*args)
