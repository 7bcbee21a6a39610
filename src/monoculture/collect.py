"""The collect phase: run a study's prompts on its models into the store, resumably.

Everything is validated before the first write. Each generation's key hashes what determines
it, so a rerun asks the backends only for what is missing (or failed), and results are written
in small transactions, so a kill loses at most one batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from monoculture.backends import backend_class, create_backend
from monoculture.backends.base import Job, Result
from monoculture.hashing import digest
from monoculture.store import Store
from monoculture.study import ModelSpec, Sampling, Study
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


@dataclass
class Plan:
    """What one model still has to generate."""

    spec: ModelSpec
    sampling: Sampling
    jobs: list[Job]
    total: int

    @property
    def missing(self) -> int:
        return sum(len(j.keys) for j in self.jobs)


@dataclass
class RunStats:
    generated: int = 0
    failed: int = 0
    skipped: int = 0
    per_model: dict[str, dict[str, int]] = field(default_factory=dict)


def plan_study(study: Study, store: Store, prompts: list[Prompt], models: Iterable[ModelSpec]) -> list[Plan]:
    plans = []
    for spec in models:
        sampling = study.sampling_for(spec)
        jobs, all_keys = [], []
        for p in prompts:
            messages = render_messages(p, sampling)
            keys = [generation_key(spec, messages, sampling, i) for i in range(study.samples)]
            all_keys += keys
            jobs.append(Job(messages=messages, sample_indices=list(range(study.samples)), keys=keys, sampling=sampling, prompt_key=p.key))
        done = store.done_keys(all_keys)
        todo = []
        for j in jobs:
            idx = [(i, k) for i, k in zip(j.sample_indices, j.keys) if k not in done]
            if idx:
                j.sample_indices = [i for i, _ in idx]
                j.keys = [k for _, k in idx]
                todo.append(j)
        plans.append(Plan(spec, sampling, todo, len(all_keys)))
    return plans


def run_study(study: Study, store: Store, *, models: list[str] | None = None, console: Console | None = None, show_progress: bool = True) -> RunStats:
    """Generate every missing sample of the study; returns counts. Safe to interrupt."""
    console = console or Console(stderr=True)
    specs = [m for m in study.models if not models or m.name in models]
    if models:
        unknown = set(models) - {m.name for m in study.models}
        if unknown:
            from monoculture.errors import UserError

            raise UserError(f"no model named {', '.join(sorted(unknown))} in the study")
    for spec in specs:  # fail before writing anything
        backend_class(spec.backend).preflight(spec)
    prompts = study.load_prompts()

    with store.transaction():
        store.upsert_models(
            [
                {
                    "name": m.name, "backend": m.backend, "model_id": m.model, "revision": m.revision,
                    "identity": m.identity(), "attributes": m.attributes.model_dump(exclude_none=True), "source": "run",
                }
                for m in study.models
            ]
        )
        store.upsert_prompts(prompts)
    store.register_study(study.name, str(study.path) if study.path else None, study.model_dump(mode="json"), [m.name for m in study.models], [p.key for p in prompts])

    plans = plan_study(study, store, prompts, specs)
    stats = RunStats()
    for plan in plans:
        stats.skipped += plan.total - plan.missing
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, disable=not show_progress, transient=False,
    ) as progress:
        for plan in plans:
            task = progress.add_task(plan.spec.name, total=plan.total, completed=plan.total - plan.missing)
            counts = {"generated": 0, "failed": 0, "skipped": plan.total - plan.missing}
            stats.per_model[plan.spec.name] = counts
            if not plan.jobs:
                continue
            _run_plan(plan, store, study.batch_size, progress, task, counts)
            stats.generated += counts["generated"]
            stats.failed += counts["failed"]
    return stats


def _run_plan(plan: Plan, store: Store, batch_size: int, progress: Progress, task, counts: dict[str, int]) -> None:
    where = {k: (j.prompt_key, i) for j in plan.jobs for i, k in zip(j.sample_indices, j.keys)}
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
        for r in backend.generate(plan.jobs):
            if r.key not in where:
                continue  # a backend must not invent keys; ignore rather than corrupt the store
            prompt_key, sample_index = where.pop(r.key)
            buffer.append(_row(plan.spec.name, prompt_key, sample_index, r, params))
            counts["generated" if r.ok else "failed"] += 1
            progress.advance(task, 1)
            if not r.ok:
                progress.update(task, description=f"{plan.spec.name} [red]({counts['failed']} failed, retried next run)")
            if len(buffer) >= batch_size or time.monotonic() - last_flush > 5.0:
                flush()
        for key, (prompt_key, sample_index) in where.items():  # a backend that dropped a job
            buffer.append(_row(plan.spec.name, prompt_key, sample_index, Result(key=key, sample_index=sample_index, error="backend returned no result"), params))
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
