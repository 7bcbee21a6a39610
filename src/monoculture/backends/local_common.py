"""What the local engines (transformers, vLLM, llama.cpp) share: rendering chats, encoding
prompts, stop strings, per-sample seeds, error texts. One home, so that no provider imports
another and a model moved between engines gets identical prompts and seeds. No engine is
imported here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from monoculture.backends.base import Job, Result


def plain_render(messages: list[dict[str, str]]) -> str:
    """For tokenizers without a chat template (base models): readable, and the same for every
    such model, so that their answers stay comparable."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nassistant:"


def render_chat(tokenizer, messages: list[dict[str, str]]) -> tuple[str, str]:
    """The prompt text, and how it was made ("chat_template", "chat_template+system_merged"
    when the template refuses a system turn, or "plain")."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), "chat_template"
        except Exception:
            # Some templates (Gemma, early Mistral) raise on a system role; giving the system
            # prompt to the first user turn is what their model cards recommend.
            if not messages or messages[0].get("role") != "system" or len(messages) < 2:
                raise
            system, first, rest = messages[0], messages[1], messages[2:]
            merged = [{**first, "content": f"{system['content']}\n\n{first['content']}"}, *rest]
            text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
            return text, "chat_template+system_merged"
    return plain_render(messages), "plain"


def encode_prompt(tokenizer, text: str, prompt_format: str) -> list[int]:
    """Chat templates write their own BOS; letting the tokenizer add another (Llama 3 does)
    would put every model off its training distribution."""
    add_special = prompt_format == "plain"
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def candidate_token_ids(tokenizer, candidate: str) -> list[int]:
    """First tokens under which a candidate answer can start: as written and after a space.

    A variant whose first token carries no part of the candidate (a bare SentencePiece "▁", for
    instance) is dropped: it would give every candidate the same score."""
    if not candidate:
        raise ValueError("empty candidate string")
    want = candidate.strip()
    ids: list[int] = []
    for variant in (candidate, " " + candidate.lstrip()):
        toks = tokenizer(variant, add_special_tokens=False)["input_ids"]
        if not toks:
            continue
        piece = tokenizer.decode([toks[0]]).strip()
        if piece and (want.startswith(piece) or piece.startswith(want)) and toks[0] not in ids:
            ids.append(toks[0])
    if not ids:
        toks = tokenizer(candidate, add_special_tokens=False)["input_ids"]
        if toks:
            ids.append(toks[0])
    return ids


def apply_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut at the earliest stop string, as OpenAI-compatible servers do (stop text excluded)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def engine_seed(spec, job: Job, sample_index: int, bits: int = 63) -> int:
    """The seed an engine gets for one sample: ``job.seed_for(i)`` mixed with the model's
    identity and the prompt.

    Engines sample with shared-noise tricks (an exponential race in vLLM and here, an inverse
    CDF in llama.cpp): with the raw seed, two models given the same seed would draw the same
    noise and agree far more often than independent samplers would, which inflates exactly
    the similarity this project measures; two prompts would share their noise too. Mixing
    keeps every sample reproducible on its own while making streams independent."""
    import hashlib
    import json

    material = json.dumps(
        [spec.identity(), job.messages, job.seed_for(sample_index)], sort_keys=True, ensure_ascii=False, default=str
    )
    digest = hashlib.blake2b(material.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - bits)


def encode_jobs(tokenizer, jobs: Iterable[Job]) -> Iterator[tuple[Job, list[int], str] | Result]:
    """(job, prompt token ids, prompt format) for each job; a job whose chat cannot be rendered
    becomes one error Result per sample instead, so one bad prompt never stops a batch."""
    for job in jobs:
        try:
            text, fmt = render_chat(tokenizer, job.messages)
            ids = encode_prompt(tokenizer, text, fmt)
        except Exception as e:  # noqa: BLE001 - any template failure becomes error results, one prompt never stops a batch
            err = f"prompt rendering failed: {error_text(e)}"
            for i, key in zip(job.sample_indices, job.keys):
                yield Result(key=key, sample_index=i, error=err)
            continue
        yield job, ids, fmt


def error_text(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:500] if msg else type(e).__name__


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
