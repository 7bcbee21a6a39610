"""Asking the models: one option distribution per (model, item, language, steer country).

``logprobs`` reads the probability of each option letter as the first token after a fixed
answer prefix (``Answer:``), renormalised over the options: no sampling noise, one forward pass
per item. ``sample`` draws k answers through the ordinary backend ``generate`` path and parses
each strictly; refusals and unparseable answers are stored and counted, and the distribution is
over the answers that chose an option.

Both are resumable: every row is keyed by a hash of what determines it, and a rerun asks only
for what is missing or failed, writing in batches so a kill loses at most one.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from monoculture.backends import backend_class, create_backend
from monoculture.backends.base import Job, LogprobsUnavailable, Result
from monoculture.collect import generation_key
from monoculture.errors import UserError
from monoculture.hashing import digest
from monoculture.probes import store as pstore
from monoculture.probes.items import Item, answer_prefix, load_items, option_sets, render_messages
from monoculture.probes.parser import PARSER_VERSION, AnswerParser
from monoculture.store import Store
from monoculture.study import ModelSpec, Sampling, Study
from monoculture.terminal import description_column, stderr_console

METHODS = ("logprobs", "sample")
#: Answers are a letter; a cap keeps a chatty model from spending a long answer on each sample.
SAMPLE_MAX_TOKENS = 64
#: k when neither --samples nor the study (samples > 1) says.
DEFAULT_SAMPLES = 20
#: Give up on a model whose first requests all fail: it is misconfigured, not unlucky.
FAIL_FAST = 5


@dataclass
class ModelStats:
    requested: int = 0
    already: int = 0
    new: int = 0
    errors: int = 0
    no_mass: int = 0
    outcomes: Counter = field(default_factory=Counter)


@dataclass
class ProbeRunStats:
    method: str
    samples: int | None
    per_model: dict[str, ModelStats] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(m.errors for m in self.per_model.values())


@dataclass
class _Task:
    item: Item
    steer: str | None
    messages: list[dict[str, str]]


def resolve_samples(study: Study, samples: int | None) -> int:
    if samples is not None:
        if samples < 1:
            raise UserError("--samples must be at least 1")
        return samples
    return study.samples if study.samples > 1 else DEFAULT_SAMPLES


def sample_sampling(sampling: Sampling) -> Sampling:
    return Sampling(**{**sampling.model_dump(), "max_tokens": min(sampling.max_tokens, SAMPLE_MAX_TOKENS)})


def logprob_key(spec: ModelSpec, messages: list[dict], prefix: str, letters: list[str]) -> str:
    return digest({"probe": "logprobs", "model": spec.identity(), "messages": messages, "prefix": prefix, "candidates": letters})


def sample_dist_key(spec: ModelSpec, messages: list[dict], sampling: Sampling, k: int) -> str:
    return digest(
        {
            "probe": "sample",
            "model": spec.identity(),
            "messages": messages,
            "sampling": sampling.key_params(),
            "k": k,
            "parser": PARSER_VERSION,
        }
    )


def logprobs_to_distribution(lp: dict[str, float], letters: list[str]) -> tuple[np.ndarray | None, float]:
    """Renormalised option probabilities and the mass the options had before renormalising
    (how much of the model's first-token probability went to a valid letter at all)."""
    vals = np.array([lp.get(letter, -math.inf) for letter in letters], dtype=float)
    vals = np.where(np.isnan(vals), -np.inf, vals)
    if not np.isfinite(vals).any():
        return None, 0.0
    top = vals[np.isfinite(vals)].max()
    w = np.exp(vals - top)
    mass = float(np.exp(top) * w.sum())
    return w / w.sum(), min(mass, 1.0)


def run_probe(
    study: Study,
    store: Store,
    *,
    suite: str = "values",
    method: str = "logprobs",
    steer: Sequence[str] = (),
    languages: list[str] | None = None,
    samples: int | None = None,
    models: list[str] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> ProbeRunStats:
    """Probe every model of the study; validated before anything is written."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; use {' or '.join(METHODS)}")
    steer = [s.strip() for s in steer if s and s.strip()]
    if len(set(steer)) != len(steer):
        raise UserError("a --steer country is given twice")
    specs = [m for m in study.models if not models or m.name in models]
    if models and (unknown := set(models) - {m.name for m in study.models}):
        raise UserError(f"no model named {', '.join(sorted(unknown))} in the study")
    items = load_items(suite, languages)
    k = resolve_samples(study, samples) if method == "sample" else None
    for spec in specs:
        cls = backend_class(spec.backend)
        if method == "logprobs" and not getattr(cls, "supports_logprobs", False):
            raise UserError(
                f"model {spec.name!r}: backend {spec.backend!r} cannot expose first-token log-probabilities; use --method sample"
            )
        cls.preflight(spec)

    console = console or stderr_console()
    pstore.ensure_schema(store)
    with store.transaction():
        store.upsert_models([m.store_row() for m in specs])
    pstore.write_items(store, items)
    pstore.register_models(store, study.name, [m.name for m in specs])

    sets = option_sets(items)
    parsers = {g: AnswerParser(s) for g, s in sets.items()}
    stats = ProbeRunStats(method=method, samples=k)
    with Progress(
        description_column("bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    ) as progress:
        for spec in specs:
            sampling = study.sampling_for(spec)
            tasks = [_Task(it, s, render_messages(it, sampling, s)) for s in [None, *steer] for it in items]
            ms = stats.per_model[spec.name] = ModelStats()
            if method == "logprobs":
                _run_logprobs(spec, tasks, store, study.batch_size, ms, progress)
            else:
                assert k is not None  # resolved above for method "sample"
                _run_sample(spec, sample_sampling(sampling), k, tasks, parsers, store, study.batch_size, ms, progress)
    return stats


def _dist_row(spec: ModelSpec, task: _Task, key: str, method: str, **kw) -> dict:
    return {
        "key": key,
        "model": spec.name,
        "item_id": task.item.id,
        "group_id": task.item.group,
        "language": task.item.language,
        "method": method,
        "steer": task.steer,
        "n_options": len(task.item.options),
        "identity": digest(spec.identity(), 16),
        **kw,
    }


def _run_logprobs(spec: ModelSpec, tasks: list[_Task], store: Store, batch_size: int, ms: ModelStats, progress: Progress) -> None:
    keyed = [(t, logprob_key(spec, t.messages, answer_prefix(t.item), t.item.letters)) for t in tasks]
    done = pstore.done_distribution_keys(store, [k for _, k in keyed])
    todo = [(t, k) for t, k in keyed if k not in done]
    ms.requested, ms.already = len(keyed), len(keyed) - len(todo)
    task_id = progress.add_task(f"{spec.name} (logprobs)", total=len(keyed), completed=ms.already)
    if not todo:
        return
    buffer: list[dict] = []
    backend = create_backend(spec)
    ok = fails = 0
    last_error = ""
    try:
        for t, key in todo:
            letters = t.item.letters
            try:
                lp = backend.first_token_logprobs(t.messages, letters, assistant_prefix=answer_prefix(t.item))
            except LogprobsUnavailable as e:
                raise UserError(f"model {spec.name!r}: {e}; use --method sample") from None
            except UserError:
                raise
            except Exception as e:  # one failed request costs one row, retried on the next run
                fails += 1
                last_error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:500]
                buffer.append(_dist_row(spec, t, key, "logprobs", status="error", error=last_error))
                ms.errors += 1
                if ok == 0 and fails >= FAIL_FAST:
                    raise UserError(
                        f"model {spec.name!r}: the first {fails} log-probability requests all failed (last: {last_error})"
                    ) from e
            else:
                ok += 1
                probs, mass = logprobs_to_distribution(lp, letters)
                raw = {c: (v if math.isfinite(v) else None) for c, v in lp.items()}
                if probs is None:
                    ms.no_mass += 1
                    buffer.append(_dist_row(spec, t, key, "logprobs", status="no_mass", option_mass=0.0, raw=raw))
                else:
                    buffer.append(
                        _dist_row(
                            spec, t, key, "logprobs", status="ok", probs=[float(x) for x in probs], option_mass=mass, raw=raw
                        )
                    )
                ms.new += 1
            progress.advance(task_id, 1)
            if len(buffer) >= batch_size:
                pstore.write_distributions(store, buffer)
                buffer = []
    finally:
        if buffer:
            pstore.write_distributions(store, buffer)
        backend.close()


def _run_sample(
    spec: ModelSpec,
    sampling: Sampling,
    k: int,
    tasks: list[_Task],
    parsers: dict[str, AnswerParser],
    store: Store,
    batch_size: int,
    ms: ModelStats,
    progress: Progress,
) -> None:
    keys = {id(t): [generation_key(spec, t.messages, sampling, i) for i in range(k)] for t in tasks}
    all_keys = [x for t in tasks for x in keys[id(t)]]
    done = pstore.done_answer_keys(store, all_keys)
    where: dict[str, tuple[_Task, int]] = {}
    jobs = []
    for t in tasks:
        idx = [(i, key) for i, key in enumerate(keys[id(t)]) if key not in done]
        if idx:
            jobs.append(
                Job(messages=t.messages, sample_indices=[i for i, _ in idx], keys=[key for _, key in idx], sampling=sampling)
            )
            where.update({key: (t, i) for i, key in idx})
    ms.requested, ms.already = len(all_keys), len(all_keys) - len(where)
    task_id = progress.add_task(f"{spec.name} (sample, k={k})", total=len(all_keys), completed=ms.already)

    if jobs:
        buffer: list[dict] = []
        last_flush = time.monotonic()
        backend = create_backend(spec)
        try:
            for r in backend.generate(jobs):
                if r.key not in where:
                    continue  # a backend must not invent keys
                t, i = where.pop(r.key)
                buffer.append(_answer_row(spec, t, i, r, parsers[t.item.group]))
                if r.ok:
                    ms.new += 1
                else:
                    ms.errors += 1
                progress.advance(task_id, 1)
                if len(buffer) >= batch_size or time.monotonic() - last_flush > 5.0:
                    pstore.write_answers(store, buffer)
                    buffer, last_flush = [], time.monotonic()
            for key, (t, i) in where.items():  # a backend that dropped a job
                buffer.append(
                    _answer_row(
                        spec, t, i, Result(key=key, sample_index=i, error="backend returned no result"), parsers[t.item.group]
                    )
                )
                ms.errors += 1
        finally:
            if buffer:
                pstore.write_answers(store, buffer)
            backend.close()

    _reparse(store, spec.name, parsers)
    rows = []
    answers = pstore.answers_for(store, all_keys).set_index("key")
    for t in tasks:
        ks = [x for x in keys[id(t)] if x in answers.index]
        sub = answers.loc[ks]
        outcomes = Counter({o: 0 for o in ("ok", "refusal", "ambiguous", "unparseable", "empty", "error")})
        counts = np.zeros(len(t.item.options))
        for _, a in sub.iterrows():
            if a["error"] is not None and not (isinstance(a["error"], float) and math.isnan(a["error"])):
                outcomes["error"] += 1
                continue
            outcomes[a["outcome"]] += 1
            if a["outcome"] == "ok":
                counts[int(a["option_index"])] += 1
        ms.outcomes.update({o: n for o, n in outcomes.items() if n})
        n_ok = int(counts.sum())
        key = sample_dist_key(spec, t.messages, sampling, k)
        rows.append(
            _dist_row(
                spec,
                t,
                key,
                "sample",
                status="ok" if n_ok else ("error" if outcomes["error"] == k else "no_answers"),
                probs=[float(x) for x in counts / n_ok] if n_ok else None,
                n_answers=n_ok,
                n_total=k,
                outcomes=dict(outcomes),
                raw={"counts": [int(x) for x in counts]},
            )
        )
    pstore.write_distributions(store, rows)


def _answer_row(spec: ModelSpec, t: _Task, i: int, r: Result, parser: AnswerParser) -> dict:
    if r.ok:
        p = parser.parse(r.text)
        outcome, option, via = p.outcome, p.option, p.via
    else:
        outcome, option, via = "error", None, None
    return {
        "key": r.key,
        "model": spec.name,
        "item_id": t.item.id,
        "group_id": t.item.group,
        "language": t.item.language,
        "steer": t.steer,
        "sample_index": i,
        "text": r.text if r.ok else None,
        "error": None if r.ok else (r.error or "backend returned no text"),
        "finish_reason": r.finish_reason,
        "outcome": outcome,
        "option_index": option,
        "parse_via": via,
        "parser_version": PARSER_VERSION,
        "attempts": 1,
    }


def _reparse(store: Store, model: str, parsers: dict[str, AnswerParser]) -> None:
    """Answers parsed by an older parser are parsed again: the text is the record, the parse a
    derived view of it."""
    stale = pstore.stale_answers(store, model, PARSER_VERSION)
    rows = []
    for key, group, text in stale.itertuples(index=False):
        parser = parsers.get(group)
        if parser is None:
            continue
        p = parser.parse(text)
        rows.append(
            {"key": key, "outcome": p.outcome, "option_index": p.option, "parse_via": p.via, "parser_version": PARSER_VERSION}
        )
    pstore.update_parses(store, rows)
