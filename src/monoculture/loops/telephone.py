"""Import chains that already exist: the TelephoneGameLLM layout (Perez et al. 2024).

Their repository keeps one transmission chain per file, at
``Results/<model>/<task>/<text>/seed_<k>/output0.json``: ``initial_story`` is the seed text,
``stories[t][0]`` the text agent t wrote (generation t + 1, which read generation t), and
``prompt_init[0]`` the instruction actually sent (the parameter files at their HEAD differ from
it by a typo, so the file's own copy is the one we keep as the chain's instruction).

Each file becomes one :class:`~monoculture.loops.tables.Chain` (model, task and seed text from
the folders, replicate from ``seed_<k>``) with its steps keyed exactly as a run of our own would
key them (:func:`~monoculture.loops.tables.step_key` of the text each step read), so every loop
measure reads imported chains and run chains the same way, and importing twice adds nothing.

Every file is read and checked before anything is written, and chains and steps are written in
one transaction: a damaged file (bad JSON, not UTF-8, a missing key, a wrong shape) refuses the
whole import, naming the file, and leaves the store as it was. Empty generations are kept as
empty texts (the base model wrote ten): they are what the next agent read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from monoculture.errors import UserError
from monoculture.loops.tables import Chain, register_chains, step_key, write_steps
from monoculture.store import Store

#: The study imported chains are listed under unless the user names another.
DEFAULT_STUDY = "telephone"
SOURCE = "telephone"
_SEED_DIR = re.compile(r"^seed_(\d+)$")
_OUTPUT = "output0.json"


@dataclass
class TelephoneChain:
    """One checked file: the chain and its texts in order (``texts[t]`` is step t + 1)."""

    path: Path
    chain: Chain
    texts: list[str]


def find_files(path: str | Path) -> list[Path]:
    """The chain files under ``path`` (a ``Results/`` folder, a model or task folder below it,
    a run folder, or one ``output0.json``), sorted. Model, task and text come from the folder
    names above each file, so any level of the tree can be imported."""
    p = Path(path)
    if not p.exists():
        raise UserError("no such file or folder", where=str(p))
    if p.is_file():
        files = [p]
    else:
        files = sorted(f for f in p.rglob("output*.json") if f.is_file())
    if not files:
        raise UserError(f"no TelephoneGame chain files ({_OUTPUT}) found below this folder", where=str(p))
    return files


def _where(f: Path) -> Path:
    """The file as it sits in its tree: Results/<model>/<task>/<text>/seed_<k>/output0.json,
    resolved so that a relative path still names its model and task folders."""
    return f.resolve()


def _check_str(value: Any, field: str, f: Path) -> str:
    if not isinstance(value, str):
        raise UserError(f"{field}: expected a string, got {type(value).__name__}", where=str(f))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate escaped in the JSON ("\ud800"): no store can keep it as text
        raise UserError(f"{field}: not valid Unicode (a lone surrogate escape)", where=str(f)) from None
    return value


def read_file(f: Path) -> TelephoneChain:
    """Check one chain file and build its chain; every problem is a UserError naming the file
    and the field."""
    full = _where(f)
    if full.name != _OUTPUT:
        raise UserError(
            f"expected {_OUTPUT} (one linear chain per run folder); other output files are not supported",
            where=str(f),
        )
    seed_dir, text_dir = full.parent, full.parent.parent
    task_dir, model_dir = text_dir.parent, text_dir.parent.parent
    m = _SEED_DIR.match(seed_dir.name)
    if not m or not model_dir.name or not task_dir.name:
        raise UserError(
            "expected the layout Results/<model>/<task>/<text>/seed_<k>/output0.json",
            where=str(f),
        )
    raw = f.read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte {e.start})", where=str(f)) from None
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", where=str(f)) from None
    if not isinstance(doc, dict):
        raise UserError(f"expected a JSON object, got {type(doc).__name__}", where=str(f))
    for key in ("initial_story", "stories", "prompt_init"):
        if key not in doc:
            raise UserError(f'missing key "{key}"', where=str(f))
    seed_text = _check_str(doc["initial_story"], "initial_story", f)
    prompt = doc["prompt_init"]
    if not isinstance(prompt, list) or not prompt:
        raise UserError("prompt_init: expected a non-empty list holding the instruction", where=str(f))
    instruction = _check_str(prompt[0], "prompt_init[0]", f)
    stories = doc["stories"]
    if not isinstance(stories, list) or not stories:
        raise UserError(f"stories: expected a non-empty list of generations, got {type(stories).__name__}", where=str(f))
    texts: list[str] = []
    for t, gen in enumerate(stories):
        if not isinstance(gen, list) or len(gen) != 1:
            shape = f"a list of {len(gen)}" if isinstance(gen, list) else type(gen).__name__
            raise UserError(f"stories[{t}]: expected a list holding one text (a single linear chain), got {shape}", where=str(f))
        texts.append(_check_str(gen[0], f"stories[{t}][0]", f))
    model = model_dir.name
    chain = Chain(
        kind="text",
        task=task_dir.name,
        instruction=instruction,
        seed_id=text_dir.name,
        seed_text=seed_text,
        models=[model],
        identities=[{"source": SOURCE, "model": model}],
        order_kind="single",
        replicate=int(m.group(1)),
        steps=len(texts),
        source=SOURCE,
    )
    return TelephoneChain(path=f, chain=chain, texts=texts)


def step_rows(tc: TelephoneChain) -> list[dict]:
    """The chain's steps keyed as :func:`~monoculture.loops.tables.chain_progress` follows them:
    step t's key hashes the text it read (the seed for step 1), and its ``input_key`` is the
    previous step's key ("" for step 1)."""
    cid = tc.chain.chain_id
    model = tc.chain.models[0]
    rows, prev_text, prev_key = [], tc.chain.seed_text, ""
    for t, text in enumerate(tc.texts, start=1):
        key = step_key(cid, t, prev_text)
        rows.append({"key": key, "chain_id": cid, "step": t, "model": model, "input_key": prev_key, "text": text, "attempts": 1})
        prev_text, prev_key = text, key
    return rows


def read_tree(path: str | Path) -> list[TelephoneChain]:
    """Every chain file under ``path``, checked (the first bad file stops the import). Two files
    that are the same chain (same model, task, seed text, instruction and run number) are
    refused: one of them would silently overwrite the other."""
    chains = [read_file(f) for f in find_files(path)]
    seen: dict[str, Path] = {}
    for tc in chains:
        cid = tc.chain.chain_id
        if cid in seen:
            raise UserError(
                f"the same chain as {seen[cid]} (same model, task, seed text, instruction and run)", where=str(tc.path)
            )
        seen[cid] = tc.path
    return chains


def import_telephone(store: Store, path: str | Path, *, study: str | None = DEFAULT_STUDY) -> dict[str, int]:
    """Import a TelephoneGameLLM ``Results/`` tree (or any folder or file below it) into the
    store, listed under ``study``. All files are checked first, then chains and steps are written
    in one transaction; steps already stored are left untouched, so a reimport adds nothing.
    A stored step that says something else than the file (same chain, step and input, another
    text) refuses the import, naming the file. Returns counts."""
    chains = read_tree(path)
    rows = [{**r, "path": tc.path} for tc in chains for r in step_rows(tc)]  # write_steps keeps only its columns
    steps = pd.DataFrame(rows, columns=["key", "text"])  # noqa: F841 - read by the SQL
    ids = pd.DataFrame({"chain_id": [tc.chain.chain_id for tc in chains]})  # noqa: F841 - read by the SQL
    with store.transaction():
        known_chains = {
            r[0]
            for r in store.con.execute("SELECT chain_id FROM loop_chains WHERE chain_id IN (SELECT chain_id FROM ids)").fetchall()
        }
        stored = dict(store.con.execute("SELECT s.key, s.text FROM loop_steps s JOIN steps USING (key)").fetchall())
        for r in rows:
            if r["key"] in stored and stored[r["key"]] != r["text"]:
                raise UserError(
                    f"step {r['step']} differs from the one already in the store for this chain (same input, another text); "
                    "refusing to mix two versions of a chain",
                    where=str(r["path"]),
                )
        listed = {
            r[0]
            for r in store.con.execute(
                "SELECT chain_id FROM study_loop_chains WHERE study = ? AND chain_id IN (SELECT chain_id FROM ids)", [study]
            ).fetchall()
        }
        new_rows = [r for r in rows if r["key"] not in stored]
        register_chains(store, study, [tc.chain for tc in chains], atomic=False)
        write_steps(store, new_rows, atomic=False)
    return {
        "files": len(chains),
        "chains": len(chains),
        "new_chains": sum(tc.chain.chain_id not in known_chains for tc in chains),
        "newly_listed": sum(tc.chain.chain_id not in listed for tc in chains) if study is not None else 0,
        "steps": len(rows),
        "new_steps": len(new_rows),
        "empty_texts": sum(r["text"] == "" for r in rows),
        "models": len({tc.chain.models[0] for tc in chains}),
        "tasks": len({tc.chain.task for tc in chains}),
        "seeds": len({tc.chain.seed_id for tc in chains}),
    }


# -- the published figures (issue 13, must show 3) --------------------------------------------

#: The three tasks in the order the paper reports them.
TASKS = ("rephrase", "inspiration", "continue")

#: Attractor strengths Perez et al. 2024 publish (final generation, 5 runs x 20 seed texts per
#: fit), per (model folder, property): rephrase, inspiration, continue.
PUBLISHED_STRENGTH: dict[tuple[str, str], tuple[float, float, float]] = {
    ("Meta-Llama-3-8B-Instruct", "positivity"): (0.67, 0.85, 0.87),
    ("Meta-Llama-3-8B-Instruct", "difficulty"): (0.68, 0.91, 0.83),
    ("Meta-Llama-3-8B-Instruct", "length"): (0.58, 0.73, 0.83),
    ("Mistral-7B-Instruct-v0.2", "positivity"): (0.49, 0.78, 0.95),
    ("Mistral-7B-Instruct-v0.2", "difficulty"): (0.54, 0.75, 0.91),
    ("Mistral-7B-Instruct-v0.2", "length"): (0.19, 0.35, 0.91),
}

#: The x the paper's code regresses on for each property: the seed for positivity and
#: difficulty, the first generation for length (its length list leaves the seed out).
PAPER_X_FROM = {"positivity": "seed", "difficulty": "seed", "length": "first"}


def published_comparison(
    store: Store,
    study: str | None = DEFAULT_STUDY,
    *,
    properties: tuple[str, ...] = ("positivity", "difficulty", "length"),
    bootstrap: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Our attractors of the imported chains beside the published strengths: one row per
    (model, task, property) at the final step, with strength, interval and position for x =
    the seed and for x = the first generation, which x the paper used for that property, and
    the published strength (None for a model the paper's figures do not cover here, such as the
    base model). Only the texts the regressions read are scored (steps 0, 1 and the last)."""
    from monoculture.loops.attractors import attractor_table
    from monoculture.loops.scorers import get_scorers, score_frame
    from monoculture.loops.tables import read_steps

    frame = read_steps(store, study, kind="text")
    if frame.empty:
        raise UserError(f"no text chains in the store for study {study!r}: import them first")
    last = frame.groupby("chain_id")["step"].transform("max")
    frame = frame[frame["step"].isin([0, 1]) | (frame["step"] == last)]
    scorers = get_scorers(list(properties))
    scored = score_frame(frame, scorers)
    bounds = {s.name: s.bounds for s in scorers}
    fits = {}
    for x_from in ("seed", "first"):
        rows, _ = attractor_table(scored, bounds, x_from=x_from, steps=("final",), bootstrap=bootstrap, seed=seed)
        fits[x_from] = {(r["model"], r["task"], r["property"]): r for r in rows}
    out = []
    for key in sorted(
        fits["seed"], key=lambda k: (k[0], properties.index(k[2]), TASKS.index(k[1]) if k[1] in TASKS else 9, k[1])
    ):
        model, task, prop = key
        pub = PUBLISHED_STRENGTH.get((model, prop))
        row: dict[str, Any] = {"model": model, "task": task, "property": prop, "chains": fits["seed"][key]["chains"]}
        for x_from in ("seed", "first"):
            r = fits[x_from].get(key, {})
            row[f"strength_{x_from}"] = r.get("strength")
            row[f"ci_{x_from}"] = r.get("ci", [None, None])
            row[f"position_{x_from}"] = r.get("position")
            row[f"slope_{x_from}"] = r.get("slope")
        row["paper_x"] = PAPER_X_FROM.get(prop, "seed")
        row["published"] = pub[TASKS.index(task)] if pub is not None and task in TASKS else None
        ours = row[f"strength_{row['paper_x']}"]
        row["ours"] = ours
        row["difference"] = None if ours is None or row["published"] is None else ours - row["published"]
        lo, hi = row[f"ci_{row['paper_x']}"]
        row["published_in_ci"] = None if row["published"] is None or lo is None else bool(lo <= row["published"] <= hi)
        out.append(row)
    return pd.DataFrame(out)
