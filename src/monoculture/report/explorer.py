"""The prompt explorer's data: every prompt's text and voices, and the answers of a subset.

All answers of a large study do not fit in a page one wants to open (AlpacaEval: 28 models x
805 prompts is about 31 MB of text), so the page holds the answers of a stated subset: the
prompts at both ends of the voices scale, where the models agree most and least, which is what
a reader wants to see first. Every prompt's text stays searchable either way.

Per-prompt similarities of model pairs are not among the stored tables, so they are recomputed
here from the embedding cache with the measurement's own calibration mean. The mean over all
pairs (i, j) of two models' unit vectors is the dot product of their mean vectors, so each
prompt costs one small matrix product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monoculture.metrics.responses import prompt_labels

MAX_ANSWER_CHARS = 20_000
PROMPT_TEXT_BUDGET = 3_000_000
PROMPT_CUT = 400
ANSWER_BUDGET_BYTES = 12_000_000
PAIRS_SHOWN = 3


@dataclass
class ExplorerData:
    payload: dict[str, Any]
    held: int
    total: int
    description: str
    notes: list[str] = field(default_factory=list)


def _num(x, digits: int = 4):
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return None
    return round(xf, digits) if math.isfinite(xf) else None


def prompt_label(prompt_id, prompt_key) -> str:
    """The id measure gives a prompt (its per-prompt tables are indexed by it)."""
    if prompt_id is None or (isinstance(prompt_id, float) and math.isnan(prompt_id)) or prompt_id == "":
        return str(prompt_key)
    return str(prompt_id)


def load_vectors(store, embedder: str, texts: list[str]) -> np.ndarray | None:
    """Raw cached vectors for ``texts`` (NaN rows where missing), or None without a cache."""
    from monoculture.hashing import text_hash

    try:
        has = store.con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'embeddings'").fetchall()
        if not has:
            return None
        hashes = [text_hash(t) for t in texts]
        want = pd.DataFrame({"text_hash": sorted(set(hashes))})  # noqa: F841 - read by the SQL below
        rel = store.con.sql(
            "SELECT e.text_hash, e.vector FROM embeddings e JOIN want USING (text_hash) WHERE e.embedder = $embedder",
            params={"embedder": embedder},
        )
        tbl = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    except Exception:  # noqa: BLE001 - pairs are optional; the explorer says they are missing
        return None
    if tbl.num_rows == 0:
        return None
    col = tbl.column("vector").combine_chunks()
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        return None
    d = int(lengths[0])
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    vecs = flat.reshape(-1, d)
    pos = {h: i for i, h in enumerate(tbl.column("text_hash").to_pylist())}
    out = np.full((len(texts), d), np.nan, dtype=np.float32)
    for i, h in enumerate(hashes):
        j = pos.get(h)
        if j is not None:
            out[i] = vecs[j]
    return out


def unit_rows(X: np.ndarray, mu: np.ndarray | None) -> np.ndarray:
    """The measurement's embeddings: centred on its mu when calibrated, then unit length; NaN
    rows where measure dropped the row (the cleaning lives in metrics.responses)."""
    from monoculture.metrics.responses import unit_rows as clean_unit_rows

    return clean_unit_rows(X, mu if mu is not None and len(mu) == X.shape[1] else None)


def prompt_pairs(gen: pd.DataFrame, X: np.ndarray, models: list[str]) -> dict[str, tuple[list, list]]:
    """For each prompt label, its most and least similar model pairs [(a, b, sim)]."""
    mcode = {m: i for i, m in enumerate(models)}
    out: dict[str, tuple[list, list]] = {}
    ok = np.isfinite(X).all(axis=1)
    codes = gen["model"].map(mcode).to_numpy()
    for pl, idx in gen.groupby("plabel", sort=False).indices.items():
        idx = idx[ok[idx] & ~pd.isna(codes[idx])]
        if len(idx) == 0:
            continue
        mc = codes[idx].astype(int)
        present = np.unique(mc)
        if len(present) < 2:
            continue
        sums = np.zeros((len(models), X.shape[1]))
        np.add.at(sums, mc, X[idx])
        cnt = np.bincount(mc, minlength=len(models))
        means = sums[present] / cnt[present][:, None]
        S = means @ means.T
        iu = np.triu_indices(len(present), 1)
        sims = S[iu]
        order = np.argsort(sims)
        k = min(PAIRS_SHOWN, len(sims))

        def pick(ix, present=present, iu=iu, sims=sims):  # this prompt's arrays, bound now
            return [[int(present[iu[0][j]]), int(present[iu[1][j]]), round(float(sims[j]), 4)] for j in ix]

        out[pl] = (pick(order[::-1][:k]), pick(order[:k]) if len(sims) > k else [])
    return out


def select_prompts(labels: list[str], voices: dict[str, float | None], max_prompts: int) -> list[str]:
    """Alternately the prompt with the fewest and the one with the most voices, so any cut
    (a count or a size budget) keeps both ends in balance."""
    if max_prompts <= 0:
        return []
    if len(labels) <= max_prompts:
        return list(labels)
    scored = sorted(labels, key=lambda p: (voices.get(p) if voices.get(p) is not None else math.inf, p))
    defined = [p for p in scored if voices.get(p) is not None]
    rest = [p for p in scored if voices.get(p) is None]
    out, lo, hi = [], 0, len(defined) - 1
    while lo <= hi:
        out.append(defined[lo])
        lo += 1
        if lo <= hi:
            out.append(defined[hi])
            hi -= 1
    return (out + rest)[:max_prompts]


def build_explorer(
    gen: pd.DataFrame,
    per_prompt: pd.DataFrame | None,
    models: list[str],
    attrs: dict[str, dict],
    *,
    max_prompts: int = 100,
    vectors: np.ndarray | None = None,
    budget_bytes: int = ANSWER_BUDGET_BYTES,
    max_answer_chars: int = MAX_ANSWER_CHARS,
) -> ExplorerData:
    """``models`` is the display order (the clustering's, so families sit side by side)."""
    notes: list[str] = []
    gen = gen.copy()
    gen["plabel"] = prompt_labels(gen["prompt_key"].tolist(), gen["prompt_id"].tolist())  # as measure labels them
    pp = per_prompt.copy() if per_prompt is not None else pd.DataFrame()
    if len(pp):
        pp.index = pp.index.map(str)
        pp = pp[~pp.index.duplicated()]
    first = gen.drop_duplicates("plabel")
    labels = first["plabel"].tolist()
    voices = {p: _num(pp.at[p, "voices"]) if p in pp.index and "voices" in pp.columns else None for p in labels}

    pairs: dict[str, tuple[list, list]] = {}
    if vectors is not None:
        pairs = prompt_pairs(gen, vectors, models)
    else:
        notes.append(
            "the most and least similar pairs of each prompt need the measurement's cached embeddings, which were not found"
        )

    mindex = {m: i for i, m in enumerate(models)}
    family = [attrs.get(m, {}).get("family") for m in models]
    chosen = select_prompts(labels, voices, max_prompts)
    by_label = gen.groupby("plabel", sort=False).indices
    answers: dict[str, list] = {}
    used = 0
    cut_by_budget = False
    truncated = 0
    for p in chosen:
        rows = gen.iloc[by_label[p]]
        items = []
        size = 0
        for r in rows.itertuples(index=False):
            t = r.text if isinstance(r.text, str) else ""
            cut = 0
            if len(t) > max_answer_chars:
                cut = len(t) - max_answer_chars
                t = t[:max_answer_chars]
                truncated += 1
            mi = mindex.get(r.model)
            if mi is None:
                continue
            items.append([mi, int(r.sample_index), t, cut])
            size += len(t.encode("utf-8")) + 24
        if used + size > budget_bytes and answers:
            cut_by_budget = True
            break
        used += size
        items.sort(key=lambda it: (it[0], it[1]))
        answers[p] = items

    prompts: list[dict[str, Any]] = []
    for r in first.itertuples(index=False):
        p = r.plabel
        row = pp.loc[p] if p in pp.index else None
        most, least = pairs.get(p, ([], []))
        prompts.append(
            {
                "id": p,
                "text": r.prompt if isinstance(r.prompt, str) else "",
                "voices": voices.get(p),
                "homogeneity": _num(row["homogeneity"]) if row is not None and "homogeneity" in pp.columns else None,
                "models": int(row["models"]) if row is not None and "models" in pp.columns and pd.notna(row["models"]) else None,
                "language": r.language if isinstance(r.language, str) else None,
                "category": r.category if isinstance(r.category, str) else None,
                "answers": p in answers,
                "most": most,
                "least": least,
            }
        )
    # Thousands of long prompts would crowd out the answers: past a budget, prompts whose
    # answers are not held keep only their beginning (enough to search and recognise them).
    cut_prompts = 0
    if sum(len(pr["text"]) for pr in prompts) > PROMPT_TEXT_BUDGET:
        for pr in prompts:
            if not pr["answers"] and len(pr["text"]) > PROMPT_CUT:
                pr["text"] = pr["text"][:PROMPT_CUT] + "…"
                cut_prompts += 1
    counts = gen.groupby("plabel")["model"].nunique().to_dict()
    for pr in prompts:
        if pr["models"] is None:
            pr["models"] = int(counts.get(pr["id"], 0))

    held, total = len(answers), len(labels)
    if held == total:
        desc = f"The explorer holds every answer to all {total} prompts."
    elif held == 0:
        desc = (
            f"The explorer holds no answers (built with --max-prompts 0); all {total} prompts' texts and voices are searchable."
        )
    else:
        low = sum(1 for p in list(answers)[0::2])
        high = held - low
        desc = (
            f"The explorer holds the answers to {held} of {total} prompts: the {low} with the fewest voices and the {high} with the most"
            + (f" (cut at a {budget_bytes / 1e6:.0f} MB size budget)" if cut_by_budget else "")
            + f". Every prompt's text and voices are searchable; build with --max-prompts {total} to include all answers."
        )
    if truncated:
        desc += f" {truncated} answers longer than {max_answer_chars:,} characters are cut, saying so."
    if cut_prompts:
        desc += f" The texts of {cut_prompts} prompts without answers here are shortened to their first {PROMPT_CUT} characters."
    payload = {
        "models": [{"name": m, "family": f} for m, f in zip(models, family)],
        "prompts": prompts,
        "answers": answers,
        "held": held,
        "total": total,
        "description": desc,
        "pairs": bool(pairs),
    }
    return ExplorerData(payload, held, total, desc, notes)
