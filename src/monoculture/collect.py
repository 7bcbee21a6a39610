"""The collect phase: run a study's prompts on its models into the store, resumably.

Everything is validated before the first write (:func:`prepare_run`; the CLI calls it before it
even creates the store file). Each generation's key hashes what determines it, so a rerun asks
the backends only for what is missing (or failed), and results are written in small
transactions, so a kill loses at most one batch. Jobs are made a chunk of prompts at a time, so
memory does not grow with prompts x samples.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from monoculture.backends import backend_class, create_backend
from monoculture.backends.base import Job, Result
from monoculture.errors import UserError
from monoculture.hashing import canonical_json, digest
from monoculture.store import Store
from monoculture.study import ExecutorSection, ModelSpec, Sampling, Study
from monoculture.suites import Prompt


def render_messages(prompt: Prompt, sampling: Sampling) -> list[dict[str, str]]:
    """The messages a model actually sees: the study's system prompt (unless the prompt brings
    its own) followed by the prompt's messages."""
    msgs = prompt.message_dicts()
    if sampling.system_prompt and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": sampling.system_prompt}] + msgs
    return msgs


def generation_key(spec: ModelSpec, messages: list[dict[str, str]], sampling: Sampling, sample_index: int) -> str:
    return digest(
        {
            "model": spec.identity(),
            "messages": messages,
            "sampling": sampling.key_params(),
            "sample_index": sample_index,
        }
    )


def key_maker(spec: ModelSpec, messages: list[dict[str, str]], sampling: Sampling) -> Callable[[int], str]:
    """:func:`generation_key` for every sample index of one prompt, with the shared part
    serialised and hashed once (a study of many samples spent most of its planning there).
    Same bytes as the canonical JSON ``digest`` hashes: its keys sort as messages, model,
    sample_index, sampling."""
    head = '{"messages":' + canonical_json(messages) + ',"model":' + canonical_json(spec.identity()) + ',"sample_index":'
    tail = ',"sampling":' + canonical_json(sampling.key_params()) + "}"
    state = hashlib.sha256(head.encode("utf-8"))

    def key(sample_index: int) -> str:
        h = state.copy()
        h.update(f"{int(sample_index)}{tail}".encode())
        return h.hexdigest()[:32]

    return key


#: Samples per planning chunk: keys are made, looked up and handed to the backend this many at
#: a time (whole prompts; a prompt with more samples is one chunk on its own).
CHUNK_SAMPLES = 4096


@dataclass
class Plan:
    """What one model has to generate: its prompts, of which ``missing`` samples are not yet
    done. Jobs come from :meth:`chunks`, made lazily."""

    spec: ModelSpec
    sampling: Sampling
    prompts: list[Prompt]
    samples: int
    total: int
    missing: int

    def _prompt_chunks(self) -> Iterator[list[Prompt]]:
        per = max(1, CHUNK_SAMPLES // self.samples)
        for start in range(0, len(self.prompts), per):
            yield self.prompts[start : start + per]

    def _chunk_jobs(self, store: Store, prompts: list[Prompt]) -> tuple[list[Job], int]:
        jobs, n_keys = [], 0
        for p in prompts:
            messages = render_messages(p, self.sampling)
            key = key_maker(self.spec, messages, self.sampling)
            keys = [key(i) for i in range(self.samples)]
            n_keys += len(keys)
            jobs.append(
                Job(
                    messages=messages,
                    sample_indices=list(range(self.samples)),
                    keys=keys,
                    sampling=self.sampling,
                    prompt_key=p.key,
                )
            )
        done = store.done_keys([k for j in jobs for k in j.keys])
        todo = []
        for j in jobs:
            idx = [(i, k) for i, k in zip(j.sample_indices, j.keys) if k not in done]
            if idx:
                j.sample_indices = [i for i, _ in idx]
                j.keys = [k for _, k in idx]
                todo.append(j)
        return todo, n_keys

    def chunks(self, store: Store) -> Iterator[list[Job]]:
        """Lists of jobs still missing, one chunk of prompts at a time."""
        for prompts in self._prompt_chunks():
            jobs, _ = self._chunk_jobs(store, prompts)
            if jobs:
                yield jobs


@dataclass
class RunStats:
    generated: int = 0
    failed: int = 0
    skipped: int = 0
    per_model: dict[str, dict[str, int]] = field(default_factory=dict)


def plan_study(study: Study, store: Store, prompts: list[Prompt], models: Iterable[ModelSpec]) -> list[Plan]:
    """One plan per model, with its count of missing samples (keys are made and looked up a
    chunk at a time, and not kept)."""
    plans = []
    for spec in models:
        plan = Plan(spec, study.sampling_for(spec), prompts, study.samples, len(prompts) * study.samples, 0)
        for chunk in plan._prompt_chunks():
            jobs, _ = plan._chunk_jobs(store, chunk)
            plan.missing += sum(len(j.keys) for j in jobs)
        plans.append(plan)
    return plans


@dataclass
class Prepared:
    """A study checked in full and ready to run: the models to run and the prompts."""

    study: Study
    specs: list[ModelSpec]
    prompts: list[Prompt]
    executor: ExecutorSection | None = None


def prepare_run(study: Study, models: list[str] | None = None, executor: ExecutorSection | None = None) -> Prepared:
    """Every check that needs no store: the model names asked for, each backend's preflight
    (params, credentials, files), the executor (``executor``, else the study's) and the
    suites. Raises UserError; writes nothing."""
    if not study.suites:
        raise UserError(
            "the study names no suites, so there is nothing to collect; its loops: run with `monoculture loop`",
            where=str(study.path or "study"),
        )
    if models:
        unknown = set(models) - {m.name for m in study.models}
        if unknown:
            raise UserError(f"no model named {', '.join(sorted(unknown))} in the study")
    specs = [m for m in study.models if not models or m.name in models]
    for spec in study.models:
        study.sampling_for(spec)
    for spec in specs:
        backend_class(spec.backend).preflight(spec)
    executor = executor or study.executor
    if executor.kind == "ray":
        from monoculture.executors.ray import check_models, import_ray

        import_ray()
        check_models(specs)
    return Prepared(study, specs, study.load_prompts(), executor)


def run_study(
    study: Study,
    store: Store,
    *,
    models: list[str] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
    prepared: Prepared | None = None,
    executor: ExecutorSection | None = None,
) -> RunStats:
    """Generate every missing sample of the study; returns counts. Safe to interrupt.

    ``prepared`` (from :func:`prepare_run`) skips the checks when the caller has run them
    already, before opening the store. ``executor`` (else the study's ``executor:``) says
    where the missing jobs run: here, or on a Ray cluster (:mod:`monoculture.executors`); the
    plan, and so every key, is the same either way."""
    console = console or Console(stderr=True)
    if prepared is None or prepared.study is not study:
        prepared = prepare_run(study, models, executor)
    specs, prompts = prepared.specs, prepared.prompts
    remote = None
    if prepared.executor is not None and prepared.executor.kind == "ray":
        from monoculture.executors.ray import RayExecutor
        from monoculture.executors.shards import merge_pending, shards_dir_for

        remote = RayExecutor(prepared.executor, shards_dir_for(store.path, prepared.executor.shards), show_progress=show_progress)
        merge_pending(store, remote.shards)  # a killed driver's complete shards, before planning
        remote.start()
        show_progress = False  # Ray Data reports the progress of its own stages

    with store.transaction():
        store.upsert_models([m.store_row() for m in study.models])
        store.upsert_prompts(prompts)
    store.register_study(
        study.name,
        str(study.path) if study.path else None,
        study.stored_spec(),
        [m.name for m in study.models],
        [p.key for p in prompts],
    )

    plans = plan_study(study, store, prompts, specs)
    stats = RunStats()
    for plan in plans:
        stats.skipped += plan.total - plan.missing
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not show_progress,
        transient=False,
    ) as progress:
        for plan in plans:
            task = progress.add_task(escape(plan.spec.name), total=plan.total, completed=plan.total - plan.missing)
            counts = {"generated": 0, "failed": 0, "skipped": plan.total - plan.missing}
            stats.per_model[plan.spec.name] = counts
            if not plan.missing:
                continue
            if remote is not None:
                remote.run_plan(plan, store, counts)
            else:
                _run_plan(plan, store, study.batch_size, progress, task, counts)
            stats.generated += counts["generated"]
            stats.failed += counts["failed"]
    return stats


def _run_plan(plan: Plan, store: Store, batch_size: int, progress: Progress, task, counts: dict[str, int]) -> None:
    params = {"sampling": plan.sampling.key_params(), "system_prompt": plan.sampling.system_prompt}
    buffer: list[dict] = []
    last_flush = time.monotonic()

    def flush():
        nonlocal buffer, last_flush
        store.write_generations(buffer)
        buffer = []
        last_flush = time.monotonic()

    backend = create_backend(plan.spec)
    try:
        for jobs in plan.chunks(store):
            where = {k: (j.prompt_key, i) for j in jobs for i, k in zip(j.sample_indices, j.keys)}
            for r in backend.generate(jobs):
                if r.key not in where:
                    continue  # a backend must not invent keys; ignore rather than corrupt the store
                prompt_key, sample_index = where.pop(r.key)
                buffer.append(_row(plan.spec.name, prompt_key, sample_index, r, params))
                counts["generated" if r.ok else "failed"] += 1
                progress.advance(task, 1)
                if not r.ok:
                    progress.update(
                        task, description=f"{escape(plan.spec.name)} [red]({counts['failed']} failed, retried next run)"
                    )
                if len(buffer) >= batch_size or time.monotonic() - last_flush > 5.0:
                    flush()
            for key, (prompt_key, sample_index) in where.items():  # a backend that dropped a job
                buffer.append(
                    _row(
                        plan.spec.name,
                        prompt_key,
                        sample_index,
                        Result(key=key, sample_index=sample_index, error="backend returned no result"),
                        params,
                    )
                )
                counts["failed"] += 1
    finally:
        if buffer:
            flush()
        backend.close()


def _row(model: str, prompt_key: str, sample_index: int, r: Result, params: dict) -> dict:
    return {
        "key": r.key,
        "model": model,
        "prompt_key": prompt_key,
        "sample_index": sample_index,
        "text": r.text if r.ok else None,
        "finish_reason": r.finish_reason,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "latency_s": r.latency_s,
        "error": None if r.ok else (r.error or "backend returned no text"),
        "n_mode": r.n_mode,
        "logprobs": r.logprobs,
        "params": {**params, **({"meta": r.meta} if r.meta else {})},
        "source": "run",
        "attempts": 1,
    }
