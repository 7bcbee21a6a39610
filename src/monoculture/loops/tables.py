"""The store's loop tables, and the one way every loop module reads and writes them.

A chain is a row of ``loop_chains``: its identity (kind, task, the exact instruction, the seed
text, the models in turn order with their identities, the order kind, the replicate and the
sampling parameters) hashes to its ``chain_id``, so two studies that ask for the same chain
share it, and lengthening ``steps`` continues a chain rather than starting a new one (the
planned length is not part of the identity). ``study_loop_chains`` says which studies use it.

A step is a row of ``loop_steps``, keyed by a hash of the chain, the step number and the exact
text it read, like a generation's key: a rerun finds the steps already done, a failed step is a
row with its error (retried on the next run), and a step whose input changed (because an
earlier step was regenerated) gets a new key instead of reusing a stale answer. Step 0 is the
seed and is not stored as a step. Image chains store one row per round: the image made from
the previous caption (PNG bytes in ``image``) and its caption (``text``).

Readers get one long frame (:func:`read_steps`): a row per chain and step, step 0 included,
only the unbroken prefix of successful steps (a chain with a failed step 7 ends at step 6 until
the failure is retried).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from monoculture.hashing import digest
from monoculture.store import Store

CHAIN_COLUMNS = [
    "chain_id",
    "kind",
    "task",
    "instruction",
    "seed_id",
    "seed_text",
    "models",
    "label",
    "order_kind",
    "replicate",
    "steps",
    "identity",
    "source",
    "created_at",
]

STEP_COLUMNS = [
    "key",
    "chain_id",
    "step",
    "model",
    "input_key",
    "text",
    "image",
    "finish_reason",
    "error",
    "latency_s",
    "attempts",
    "created_at",
]

#: Columns of the frame :func:`read_steps` returns, in order.
#: ``key`` is the step's row key in ``loop_steps`` ("" for step 0, the seed, which has no row).
FRAME_COLUMNS = [
    "chain_id",
    "study",
    "kind",
    "label",
    "task",
    "seed_id",
    "replicate",
    "order_kind",
    "step",
    "key",
    "model",
    "text",
]


@dataclass
class Chain:
    """One chain as planned. ``models`` are the model names in turn order (one name for a
    single-model chain); ``identities`` their ``ModelSpec.identity()`` (or, for imported chains,
    whatever identifies the model in its source), in the same order."""

    kind: str  # "text" | "image"
    task: str
    instruction: str
    seed_id: str
    seed_text: str
    models: list[str]
    identities: list[Any]
    order_kind: str = "single"  # "single" | "fixed" | "random"
    replicate: int = 0
    sampling: dict[str, Any] = field(default_factory=dict)
    steps: int = 50
    source: str = "run"
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label = chain_label(self.models, self.order_kind)

    def identity(self) -> dict[str, Any]:
        """Everything that determines the chain's texts, apart from its length."""
        return {
            "kind": self.kind,
            "task": self.task,
            "instruction": self.instruction,
            "seed_text": self.seed_text,
            "models": self.identities,
            "order_kind": self.order_kind,
            "replicate": self.replicate,
            "sampling": self.sampling,
        }

    @property
    def chain_id(self) -> str:
        return digest(self.identity())


def chain_label(models: Sequence[str], order_kind: str) -> str:
    """The name a chain is measured under: the model for a single-model chain, else
    ``mix:<order>:a+b+...`` (the models in turn order)."""
    if order_kind == "single" and len(models) == 1:
        return models[0]
    return f"mix:{order_kind}:" + "+".join(models)


def step_key(chain_id: str, step: int, input_text: str) -> str:
    """The key of step ``step`` (1-based) of a chain, given the exact text it reads."""
    return digest({"chain": chain_id, "step": int(step), "input": input_text})


def _transaction(store: Store, atomic: bool):
    """The store's transaction, or none where the caller already holds one (``atomic=False``:
    an importer that writes chains and steps all or nothing; DuckDB has no nested transactions)."""
    return store.transaction() if atomic else contextlib.nullcontext(store.con)


def register_chains(store: Store, study: str | None, chains: Iterable[Chain], *, atomic: bool = True) -> list[str]:
    """Insert chains that are new (an existing chain keeps its row; ``steps`` is raised to the
    larger planned length) and record that ``study`` uses them. One transaction (unless
    ``atomic=False``: then inside the caller's); returns ids."""
    rows = []
    now = time.time()
    for c in chains:
        rows.append(
            {
                "chain_id": c.chain_id,
                "kind": c.kind,
                "task": c.task,
                "instruction": c.instruction,
                "seed_id": c.seed_id,
                "seed_text": c.seed_text,
                "models": json.dumps(c.models, ensure_ascii=False),
                "label": c.label,
                "order_kind": c.order_kind,
                "replicate": int(c.replicate),
                "steps": int(c.steps),
                "identity": json.dumps(c.identity(), ensure_ascii=False, sort_keys=True, default=str),
                "source": c.source,
                "created_at": now,
            }
        )
    if not rows:
        return []
    df = pd.DataFrame(rows, columns=CHAIN_COLUMNS).drop_duplicates("chain_id", keep="last")  # noqa: F841 - read by the SQL
    with _transaction(store, atomic):
        store.con.execute(
            """
            UPDATE loop_chains SET steps = greatest(loop_chains.steps, df.steps)
            FROM df WHERE loop_chains.chain_id = df.chain_id
            """
        )
        store.con.execute("INSERT INTO loop_chains SELECT df.* FROM df ANTI JOIN loop_chains c ON c.chain_id = df.chain_id")
        if study is not None:
            store.con.execute(
                "INSERT OR IGNORE INTO study_loop_chains SELECT ?, chain_id FROM df",
                [study],
            )
    return list(dict.fromkeys(str(r["chain_id"]) for r in rows))


def write_steps(store: Store, rows: list[dict], *, atomic: bool = True) -> None:
    """Write one batch of steps in one transaction (unless ``atomic=False``: then inside the
    caller's). A key seen before is replaced (a failed attempt by its retry) and its attempt
    count carried on, as for generations."""
    if not rows:
        return
    df = pd.DataFrame([{c: r.get(c) for c in STEP_COLUMNS} for r in rows], columns=STEP_COLUMNS)
    df["created_at"] = df["created_at"].fillna(time.time())
    df["attempts"] = df["attempts"].fillna(1).astype("int64")
    df = df.drop_duplicates("key", keep="last")
    with _transaction(store, atomic):
        store.con.execute(
            """
            INSERT OR REPLACE INTO loop_steps
            SELECT df.* REPLACE (coalesce(s.attempts, 0) + df.attempts AS attempts)
            FROM df LEFT JOIN loop_steps s ON s.key = df.key
            """
        )


def read_chains(store: Store, study: str | None = None, chain_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Chain rows (``models`` decoded to lists), with a ``study`` column (one row per study
    that uses the chain; None for a chain no study lists)."""
    where, params = [], []
    if study is not None:
        where.append("s.study = ?")
        params.append(study)
    if chain_ids is not None:
        ids = pd.DataFrame({"chain_id": list(chain_ids)})  # noqa: F841 - read by the SQL
        where.append("c.chain_id IN (SELECT chain_id FROM ids)")
    sql = "SELECT c.*, s.study FROM loop_chains c LEFT JOIN study_loop_chains s USING (chain_id)"
    if where:
        sql += " WHERE " + " AND ".join(where)
    df = store.con.execute(sql + " ORDER BY c.label, c.task, c.seed_id, c.replicate, s.study", params).df()
    df["models"] = [json.loads(m) if isinstance(m, str) else [] for m in df["models"]]
    return df


def chain_progress(store: Store, chain_ids: Sequence[str]) -> dict[str, list[dict]]:
    """Per chain, its successful steps in order (dicts with ``step``, ``key``, ``text``,
    ``model``, ``input_key``), the unbroken prefix only: a runner continues from the last one."""
    if not chain_ids:
        return {}
    ids = pd.DataFrame({"chain_id": list(chain_ids)})  # noqa: F841 - read by the SQL
    rows = store.con.execute(
        """
        SELECT chain_id, step, key, text, model, input_key FROM loop_steps
        WHERE chain_id IN (SELECT chain_id FROM ids) AND error IS NULL AND text IS NOT NULL
        ORDER BY chain_id, step, created_at
        """
    ).fetchall()
    by_chain: dict[str, dict[int, list[dict]]] = {}
    for chain_id, step, key, text, model, input_key in rows:
        by_chain.setdefault(chain_id, {}).setdefault(int(step), []).append(
            {"step": int(step), "key": key, "text": text, "model": model, "input_key": input_key}
        )
    out: dict[str, list[dict]] = {}
    for cid in chain_ids:
        steps = by_chain.get(cid, {})
        prefix: list[dict] = []
        prev_key = ""
        t = 1
        while t in steps:
            # The step that read the previous step's text (a stale step of an older input is
            # a different key with the same step number and is not part of the chain).
            match = [s for s in steps[t] if s["input_key"] == prev_key]
            if not match:
                break
            prefix.append(match[-1])
            prev_key = match[-1]["key"]
            t += 1
        out[cid] = prefix
    return out


def read_steps(
    store: Store,
    study: str | None = None,
    *,
    kind: str | None = None,
    with_images: bool = False,
    chain_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The long frame every loop measure reads: one row per chain and step (step 0 = the seed,
    ``model`` None and ``key`` "" there), columns :data:`FRAME_COLUMNS` (plus ``image`` bytes
    when ``with_images``), only each chain's unbroken prefix of successful steps, sorted by chain
    and step; only the chains ``chain_ids`` names when given. A chain used by two studies
    appears once per study when ``study`` is None."""
    cols = FRAME_COLUMNS + (["image"] if with_images else [])
    if chain_ids is not None and not len(chain_ids):  # (an empty id column is float to DuckDB: no IN against text)
        return pd.DataFrame(columns=cols)
    chains = read_chains(store, study, chain_ids)
    if kind is not None:
        chains = chains[chains["kind"] == kind]
    if chains.empty:
        return pd.DataFrame(columns=cols)
    ids = list(dict.fromkeys(chains["chain_id"]))
    progress = chain_progress(store, ids)
    images: dict[str, Any] = {}
    if with_images and any(progress.values()):  # (an empty key column is float to DuckDB: no IN against text)
        keys = pd.DataFrame({"key": [s["key"] for p in progress.values() for s in p]})  # noqa: F841 - read by the SQL
        images = dict(store.con.execute("SELECT key, image FROM loop_steps WHERE key IN (SELECT key FROM keys)").fetchall())
    out: list[dict] = []
    for c in chains.itertuples(index=False):
        base = {
            "chain_id": c.chain_id,
            "study": c.study,
            "kind": c.kind,
            "label": c.label,
            "task": c.task,
            "seed_id": c.seed_id,
            "replicate": int(c.replicate),
            "order_kind": c.order_kind,
        }
        out.append({**base, "step": 0, "key": "", "model": None, "text": c.seed_text, **({"image": None} if with_images else {})})
        for s in progress.get(c.chain_id, []):
            row = {**base, "step": s["step"], "key": s["key"], "model": s["model"], "text": s["text"]}
            if with_images:
                row["image"] = images.get(s["key"])
            out.append(row)
    return pd.DataFrame(out, columns=cols)
