"""Running text chains: every chain of a study's ``loops:`` section, advanced in lock-step.

Planning (:func:`prepare_loops`) needs no store: it reads the seeds, checks each model's
backend (params, credentials) and makes the chains (:class:`monoculture.loops.tables.Chain`),
whose identity holds each model's ``ModelSpec.identity()`` and the sampling that enters its keys,
so a chain is the same chain in any study that asks for it and a changed parameter makes a new
one. Nothing is written before all of it passed.

Running (:func:`run_loops`) reads each chain's stored prefix (:func:`tables.chain_progress`)
and continues from its end. At step t the chains whose prefix ends at t - 1 are handed to the
backend together, one job each (one sample; its seed is the chain's seed plus t, so one step can
be regenerated alone), through the same ``Backend.generate`` and ``Job``/``Result`` as
``monoculture run``. Results are written in small transactions as they come, so a kill loses at
most the steps in flight. A failed step is a row with its error: its chain stops for this run
(the next step would read nothing) and the next run retries it under the same key.

Single-model chains run one model at a time (one engine in memory); mixed chains need all their
models, which are loaded together. An empty output is stored like any other and its chain
continues from the empty text, as the published base-model chains did.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress

from monoculture.backends import backend_class, create_backend
from monoculture.backends.base import Job, Result
from monoculture.collect import render_messages
from monoculture.errors import UserError
from monoculture.hashing import digest
from monoculture.loops.seeds import Seed, load_seeds
from monoculture.loops.spec import SEED_STRIDE, LoopsSection
from monoculture.loops.tables import Chain, chain_progress, register_chains, step_key, write_steps
from monoculture.store import Store
from monoculture.study import MAX_SEED, ModelSpec, Sampling, Study
from monoculture.suites import Prompt
from monoculture.terminal import stderr_console, work_progress


@dataclass
class LoopModel:
    """A model as the loops run it: its spec and its sampling (the study's, the model's
    overrides, then the ``loops:`` overrides)."""

    spec: ModelSpec
    sampling: Sampling


@dataclass
class PreparedLoops:
    """A ``loops:`` section checked in full: its models, seeds and chains, nothing written."""

    study: Study
    section: LoopsSection
    models: list[LoopModel]
    seeds: list[Seed]
    chains: list[Chain]
    images: Any = None  # monoculture.loops.images.ImageLoopSpec | None


@dataclass
class LoopOutcome:
    """What a run did. ``failed`` counts failed steps (each stopped its chain for this run; they
    are stored and retried by the next run)."""

    chains: int = 0
    planned: int = 0  # steps all chains have when finished
    generated: int = 0
    skipped: int = 0  # steps already in the store
    failed: int = 0
    empty: int = 0  # generated steps whose text is empty
    finished: int = 0  # chains at their planned length after this run
    per_label: dict[str, dict[str, int]] = field(default_factory=dict)
    images: Any = None  # the image runner's ImageLoopOutcome, when the section has images:

    @property
    def all_failed(self) -> int:
        """Failed text steps and image rounds together (the exit status counts both)."""
        return self.failed + int(getattr(self.images, "failed", 0) or 0)


def loop_sampling(study: Study, spec: ModelSpec, section: LoopsSection) -> Sampling:
    """The sampling a model's steps use."""
    base = study.sampling_for(spec)
    over = section.overrides()
    return Sampling(**{**base.model_dump(), **over}) if over else base


def sampling_identity(s: Sampling) -> dict[str, Any]:
    """The part of a model's sampling that enters a chain's identity."""
    return {**s.key_params(), "system_prompt": s.system_prompt}


def step_seed(chain: Chain, sampling: Sampling, step: int) -> int:
    """The sampling seed of step ``step`` (1-based): the model's seed, the replicate's offset
    (:data:`SEED_STRIDE` apart) and the step."""
    return sampling.seed + chain.replicate * SEED_STRIDE + step


def step_model(chain: Chain, step: int) -> int:
    """Which of the chain's models writes step ``step``: the only one, the next in a fixed
    round-robin, or a draw seeded by the chain and the step (the same on every run)."""
    n = len(chain.models)
    if n == 1 or chain.order_kind == "single":
        return 0
    if chain.order_kind == "fixed":
        return (step - 1) % n
    return int(digest({"chain": chain.chain_id, "step": int(step)}), 16) % n


def step_messages(instruction: str, text: str, sampling: Sampling) -> list[dict[str, str]]:
    """What a model reads at a step: the instruction, a space, then the previous text, as one
    user message (Perez et al.'s instructions end in "Here is the text:"), after the study's
    system prompt as :func:`monoculture.collect.render_messages` adds it."""
    content = f"{instruction} {text}" if text else instruction
    return render_messages(Prompt(id="loop", messages=(("user", content),), suite="loops"), sampling)


def plan_chains(section: LoopsSection, models: Sequence[LoopModel], seeds: Sequence[Seed]) -> list[Chain]:
    """Every chain the section asks for: per seed and task, ``chains`` replicates of each single
    model, then of each mixed order (all the section's models taking turns)."""
    groups: list[tuple[list[LoopModel], str]] = [([m], "single") for m in models]
    groups += [(list(models), order) for order in section.orders]
    out: dict[str, Chain] = {}
    for seed in seeds:
        for task in section.tasks:
            for group, order in groups:
                for r in range(section.chains):
                    c = Chain(
                        kind="text",
                        task=task.name,
                        instruction=task.instruction,
                        seed_id=seed.id,
                        seed_text=seed.text,
                        models=[m.spec.name for m in group],
                        identities=[m.spec.identity() for m in group],
                        order_kind=order,
                        replicate=r,
                        sampling={"models": [sampling_identity(m.sampling) for m in group]},
                        steps=section.steps,
                        source="run",
                    )
                    out.setdefault(c.chain_id, c)  # two seeds with the same text are one chain
    return list(out.values())


def prepare_loops(study: Study) -> PreparedLoops:
    """Every check of the ``loops:`` section that needs no store: seeds (a path relative to the
    study file), each model's backend preflight, the seed range, the image section. Raises
    UserError naming the field; writes nothing."""
    section = study.loops
    if section is None:
        raise UserError("the study has no loops: section", where=str(study.path or "study"))
    where = str(study.path or "study")
    names = section.models or [m.name for m in study.models]
    specs = [m for m in study.models if m.name in names] if section.tasks else []  # tasks: [] runs images only
    specs.sort(key=lambda m: names.index(m.name))
    models = []
    for spec in specs:
        sampling = loop_sampling(study, spec, section)
        if abs(sampling.seed) + section.chains * SEED_STRIDE > MAX_SEED:
            raise UserError(
                f"field 'loops.chains': model {spec.name!r}: seed + chains x {SEED_STRIDE} passes {MAX_SEED}", where=where
            )
        backend_class(spec.backend).preflight(spec)
        models.append(LoopModel(spec, sampling))
    source = section.seeds if section.seeds == "shipped" else study.resolve_path(section.seeds)
    seeds: list[Seed] = []
    if section.tasks:
        try:
            seeds = load_seeds(source, section.seed_ids)
        except UserError as e:
            field_name = "loops.seed_ids" if section.seed_ids and "no seed with id" in str(e) else "loops.seeds"
            raise UserError(f"field {field_name!r}: {e}", where=where) from None
    images = section.image_spec()
    if images is not None:
        from monoculture.loops.images import preflight_images

        preflight_images(images)  # engines, model folders, device: before any store exists
    return PreparedLoops(study, section, models, seeds, plan_chains(section, models, seeds), images)


def describe_plan(prepared: PreparedLoops) -> str:
    """One line for ``--check``: the chains and steps the section makes, text and images."""
    s, parts = prepared.section, []
    if prepared.chains:
        labels = sorted({c.label for c in prepared.chains})
        parts.append(
            f"{len(prepared.chains)} chains ({len(prepared.seeds)} seeds x tasks {', '.join(t.name for t in s.tasks)} x "
            f"{len(labels)} models or mixes ({', '.join(labels)}) x {s.chains} replicates), {s.steps} steps each: "
            f"{sum(c.steps for c in prepared.chains)} steps"
        )
    im = prepared.images
    if im is not None:
        pairs = im.pairs()
        n = len(pairs) * len(im.seeds) * im.chains
        parts.append(
            f"images: {n} chains ({len(pairs)} drawing and captioning pairs x {len(im.seeds)} prompts x {im.chains}), "
            f"{im.rounds} rounds each: {n * im.rounds} images and captions"
        )
    return "; ".join(parts) or "nothing to run"


# -- running -----------------------------------------------------------------------------------
@dataclass
class _State:
    chain: Chain
    done: int  # steps in the stored prefix
    text: str  # the text the next step reads
    key: str  # the key of the last step ("" before step 1)
    failed: bool = False  # a step failed in this run: the chain waits for the next run


def _register(store: Store, prepared: PreparedLoops) -> list[str]:
    study = prepared.study
    if prepared.chains:
        with store.transaction():
            store.upsert_models([m.spec.store_row() for m in prepared.models])
    if not store.con.execute("SELECT 1 FROM studies WHERE name = ?", [study.name]).fetchone():
        # a loops-only study still shows in `monoculture ls`; a study that `run` registered keeps its prompts
        store.register_study(
            study.name, str(study.path) if study.path else None, study.stored_spec(), [m.name for m in study.models], []
        )
    return register_chains(store, study.name, prepared.chains)


def run_loops(
    study: Study,
    store: Store,
    *,
    console: Console | None = None,
    show_progress: bool = True,
    prepared: PreparedLoops | None = None,
) -> LoopOutcome:
    """Run every missing step of the study's chains; returns counts. Safe to interrupt: a rerun
    continues each chain where its stored prefix ends and retries failed steps."""
    console = console or stderr_console()
    if prepared is None or prepared.study is not study:
        prepared = prepare_loops(study)
    chains = prepared.chains
    ids = _register(store, prepared)
    progress_rows = chain_progress(store, ids)
    states = []
    for c in chains:
        prefix = progress_rows.get(c.chain_id, [])
        last = prefix[-1] if prefix else None
        states.append(_State(c, len(prefix), last["text"] if last else c.seed_text, last["key"] if last else ""))
    out = LoopOutcome(chains=len(chains), planned=sum(c.steps for c in chains))
    out.skipped = sum(min(s.done, s.chain.steps) for s in states)
    for s in states:
        out.per_label.setdefault(s.chain.label, {"generated": 0, "failed": 0, "skipped": 0})["skipped"] += min(
            s.done, s.chain.steps
        )
    by_name = {m.spec.name: m for m in prepared.models}
    with work_progress(console, show_progress) as progress:
        task = progress.add_task("loop steps", total=out.planned, completed=out.skipped)
        # single-model chains one model at a time, then the mixed chains with all their models
        for name in by_name:
            group = [s for s in states if s.chain.order_kind == "single" and s.chain.models == [name]]
            _advance(group, [by_name[name]], store, study.batch_size, out, progress, task)
        mixed = [s for s in states if s.chain.order_kind != "single"]
        _advance(mixed, list(by_name.values()), store, study.batch_size, out, progress, task)
    out.finished = sum(1 for s in states if s.done >= s.chain.steps)
    if prepared.images is not None:
        out.images = _run_images(prepared, store, console, show_progress)
    return out


def _run_images(prepared: PreparedLoops, store: Store, console: Console, show_progress: bool) -> Any:
    """The ``images:`` section, run by the image module's own runner."""
    from monoculture.loops.images import run_image_loops

    return run_image_loops(store, prepared.study.name, prepared.images, console=console, show_progress=show_progress)


def _advance(
    states: list[_State], models: list[LoopModel], store: Store, batch_size: int, out: LoopOutcome, progress: Progress, task
) -> None:
    """Advance ``states`` in lock-step until each is at its planned length or failed."""
    active = [s for s in states if s.done < s.chain.steps]
    if not active:
        return
    needed = {s.chain.models[step_model(s.chain, t)] for s in active for t in range(s.done + 1, s.chain.steps + 1)}
    backends: dict[str, Any] = {}
    buffer: list[dict] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal buffer, last_flush
        write_steps(store, buffer)
        buffer = []
        last_flush = time.monotonic()

    try:
        for m in models:
            if m.spec.name in needed:
                backends[m.spec.name] = create_backend(m.spec)
        by_name = {m.spec.name: m for m in models}
        t = min(s.done for s in active) + 1
        while active:
            now = [s for s in active if s.done + 1 == t]
            per_model: dict[str, list[_State]] = {}
            for s in now:
                per_model.setdefault(s.chain.models[step_model(s.chain, t)], []).append(s)
            for name, group in per_model.items():
                m = by_name[name]
                jobs: list[Job] = []
                where: dict[str, _State] = {}
                for s in group:
                    sampling = m.sampling.model_copy(update={"seed": step_seed(s.chain, m.sampling, t)})
                    key = step_key(s.chain.chain_id, t, s.text)
                    jobs.append(Job(step_messages(s.chain.instruction, s.text, sampling), [0], [key], sampling, s.chain.chain_id))
                    where[key] = s
                for r in backends[name].generate(jobs):
                    if r.key not in where:
                        continue  # a backend must not invent keys; ignore rather than corrupt the store
                    s = where.pop(r.key)
                    buffer.append(_row(s, t, name, r))
                    _count(s, r, out, progress, task)
                    if len(buffer) >= batch_size or time.monotonic() - last_flush > 5.0:
                        flush()
                for key, s in where.items():  # a backend that dropped a job
                    r = Result(key=key, sample_index=0, error="backend returned no result")
                    buffer.append(_row(s, t, name, r))
                    _count(s, r, out, progress, task)
                flush()  # the step is complete for this model: the next one reads it
            active = [s for s in active if s.done < s.chain.steps and not s.failed]
            t += 1
    finally:
        if buffer:
            flush()
        for b in backends.values():
            b.close()


def _count(s: _State, r: Result, out: LoopOutcome, progress: Progress, task) -> None:
    counts = out.per_label.setdefault(s.chain.label, {"generated": 0, "failed": 0, "skipped": 0})
    if r.ok:
        assert r.text is not None
        s.done += 1
        s.text = r.text
        s.key = r.key
        out.generated += 1
        counts["generated"] += 1
        out.empty += not r.text.strip()
        progress.advance(task, 1)
    else:
        s.failed = True
        out.failed += 1
        counts["failed"] += 1
        progress.update(task, description=f"loop steps ({out.failed} failed, retried next run)")


def _row(s: _State, step: int, model: str, r: Result) -> dict:
    return {
        "key": r.key,
        "chain_id": s.chain.chain_id,
        "step": step,
        "model": model,
        "input_key": s.key,
        "text": r.text if r.ok else None,
        "image": None,
        "finish_reason": r.finish_reason,
        "error": None if r.ok else (r.error or "backend returned no text"),
        "latency_s": r.latency_s,
        "attempts": 1,
    }
