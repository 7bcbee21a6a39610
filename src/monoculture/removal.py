"""Removing models, studies and prompts from a store (``monoculture rm``).

What goes with each:

* ``--model NAME``: every generation of the model, the model, and its place in any study.
* ``--study NAME``: the study (its row, its model and prompt lists) and the generations that only
  it accounts for: those of its models on its prompts, unless another study has the same model
  and prompt. A model or prompt it listed goes too once no other study lists it and no
  generation is left that uses it.
* ``--prompt ID``: every prompt with that id (or prompt key), with its generations and its place
  in any study. An id two prompts share (the state issue 16.4 left stores in) removes both.

Loop chains (``loop_chains``, ``study_loop_chains``, ``loop_steps``) follow the same rules, a
chain standing to its studies as a generation does:

* ``--model NAME``: every chain the model takes part in (its single-model chains and every mixed
  chain it takes turns in, in any study), with all their steps. A mixed chain cannot lose one
  model's steps and stay a chain: each step read the one before. A name that only loop chains
  use (chains imported by ``loop import telephone``, an image chain's pipeline) is a model here.
* ``--study NAME``: the study's place in every chain (``study_loop_chains``), and the chains that
  no other study uses, with their steps; a chain another study shares stays. A study known only
  by its chains (an imported one, with no row in ``studies``) can be named too.
* ``--prompt ID``: loop chains read seed texts, not prompts; they are not touched.

The stored loop summaries (``loop_summaries``) of every study whose chains changed, and those of
the whole store (study NULL), go too: they hold the removed chains' texts and figures.

After any of these, a model or prompt that the removal touched and that is left with no study,
no generation and no loop chain is removed as well (an imported model whose answers are gone is
noise in ``ls``). Embeddings are kept: they are a cache keyed by text, reused if the same text comes back,
and never read without a generation. Measurement results are kept: they record what was
measured at the time, and measuring again writes new ones. Probe and ecosystem tables are
separate features and are not touched.

Everything happens in one transaction; ``dry_run`` runs it and rolls it back, so the counts it
prints are exactly what a real run removes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from monoculture.errors import UserError


def _names(con, sql: str, params: list | None = None) -> list[str]:
    return [r[0] for r in con.execute(sql, params or []).fetchall()]


def _chain_models(con) -> dict[str, list[str]]:
    """chain_id -> the models it takes turns in (one for a single-model chain)."""
    out: dict[str, list[str]] = {}
    for cid, models in con.execute("SELECT chain_id, models FROM loop_chains").fetchall():
        try:
            names = json.loads(models) if isinstance(models, str) else list(models or [])
        except ValueError:
            names = []
        out[cid] = [str(n) for n in names] if isinstance(names, list) else []
    return out


def _resolve(
    con, *, models: Sequence[str], studies: Sequence[str], prompts: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """The names given, checked: an unknown one is an error listing what there is."""
    have_m = set(_names(con, "SELECT name FROM models")) | {n for ms in _chain_models(con).values() for n in ms}
    have_s = set(_names(con, "SELECT name FROM studies")) | set(_names(con, "SELECT DISTINCT study FROM study_loop_chains"))
    for kind, given, have in (("model", models, have_m), ("study", studies, have_s)):
        missing = [g for g in given if g not in have]
        if missing:
            listing = ", ".join(sorted(have)[:20]) + (" ..." if len(have) > 20 else "") if have else "none"
            raise UserError(f"no {kind} named {missing[0]!r} in the store; {kind}s: {listing}")
    keys: list[str] = []
    for p in prompts:
        found = _names(con, "SELECT prompt_key FROM prompts WHERE prompt_id = ? OR prompt_key = ?", [p, p])
        if not found:
            raise UserError(f"no prompt with id (or key) {p!r} in the store")
        keys += found
    return list(dict.fromkeys(models)), list(dict.fromkeys(studies)), list(dict.fromkeys(keys))


COUNTED = ("studies", "models", "prompts", "generations", "loop_chains", "loop_steps")


def _counts(con) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COUNTED}


def _drop_chains(con, chain_ids: Sequence[str]) -> set[str]:
    """Remove these chains with their steps and study rows; the studies whose chains changed."""
    if not chain_ids:
        return set()
    ids = sorted(set(chain_ids))
    studies = set(_names(con, "SELECT DISTINCT study FROM study_loop_chains WHERE chain_id IN (SELECT unnest(?))", [ids]))
    for t in ("loop_steps", "study_loop_chains", "loop_chains"):
        con.execute(f"DELETE FROM {t} WHERE chain_id IN (SELECT unnest(?))", [ids])
    return studies


def remove(
    store, *, models: Sequence[str] = (), studies: Sequence[str] = (), prompts: Sequence[str] = (), dry_run: bool = False
) -> dict[str, Any]:
    """Remove what is named (see the module docstring); returns how many studies, models,
    prompts and generations went, and their names (``removed_models`` ...)."""
    if not (models or studies or prompts):
        raise UserError("name what to remove: --model NAME, --study NAME or --prompt ID (repeatable)")
    con = store.con
    con.execute("BEGIN TRANSACTION")
    try:
        m, s, k = _resolve(con, models=models, studies=studies, prompts=prompts)
        before = _counts(con)
        before_models = set(_names(con, "SELECT name FROM models"))
        before_studies = set(_names(con, "SELECT name FROM studies"))
        touched_models, touched_prompts = set(m), set(k)
        chain_models = _chain_models(con)
        loops_changed: set[str] = set(s)  # studies whose loop chains change: their stored summaries go
        chains_gone = False
        for study in s:
            touched_models |= set(_names(con, "SELECT model FROM study_models WHERE study = ?", [study]))
            mine = _names(con, "SELECT chain_id FROM study_loop_chains WHERE study = ?", [study])
            con.execute("DELETE FROM study_loop_chains WHERE study = ?", [study])
            alone = [c for c in mine if not con.execute("SELECT 1 FROM study_loop_chains WHERE chain_id = ?", [c]).fetchone()]
            touched_models |= {n for c in alone for n in chain_models.get(c, [])}
            _drop_chains(con, alone)
            chains_gone |= bool(alone)
            touched_prompts |= set(_names(con, "SELECT prompt_key FROM study_prompts WHERE study = ?", [study]))
            con.execute(
                """DELETE FROM generations g
                   WHERE g.model IN (SELECT model FROM study_models WHERE study = $s)
                     AND g.prompt_key IN (SELECT prompt_key FROM study_prompts WHERE study = $s)
                     AND NOT EXISTS (SELECT 1 FROM study_models om JOIN study_prompts op ON op.study = om.study
                                     WHERE om.study <> $s AND om.model = g.model AND op.prompt_key = g.prompt_key)""",
                {"s": study},
            )
            for t in ("study_models", "study_prompts"):
                con.execute(f"DELETE FROM {t} WHERE study = ?", [study])
            con.execute("DELETE FROM studies WHERE name = ?", [study])
        if m:
            theirs = [c for c, names in chain_models.items() if set(names) & set(m)]
            touched_models |= {n for c in theirs for n in chain_models[c]}
            loops_changed |= _drop_chains(con, theirs)
            chains_gone |= bool(theirs)
            touched_prompts |= set(
                _names(con, "SELECT DISTINCT prompt_key FROM generations WHERE model IN (SELECT unnest(?))", [m])
            )
            con.execute("DELETE FROM generations WHERE model IN (SELECT unnest(?))", [m])
            con.execute("DELETE FROM study_models WHERE model IN (SELECT unnest(?))", [m])
            con.execute("DELETE FROM models WHERE name IN (SELECT unnest(?))", [m])
        if k:
            touched_models |= set(
                _names(con, "SELECT DISTINCT model FROM generations WHERE prompt_key IN (SELECT unnest(?))", [k])
            )
            con.execute("DELETE FROM generations WHERE prompt_key IN (SELECT unnest(?))", [k])
            con.execute("DELETE FROM study_prompts WHERE prompt_key IN (SELECT unnest(?))", [k])
            con.execute("DELETE FROM prompts WHERE prompt_key IN (SELECT unnest(?))", [k])
        # orphans: touched, in no study, with no generation and no loop chain left
        if touched_models:
            looping = sorted({n for ms in _chain_models(con).values() for n in ms})
            con.execute(
                """DELETE FROM models WHERE name IN (SELECT unnest(?))
                   AND name NOT IN (SELECT model FROM study_models) AND name NOT IN (SELECT DISTINCT model FROM generations)
                   AND name NOT IN (SELECT unnest(?::VARCHAR[]))""",
                [sorted(touched_models), looping],
            )
        if loops_changed:
            con.execute("DELETE FROM loop_summaries WHERE study IN (SELECT unnest(?::VARCHAR[]))", [sorted(loops_changed)])
        if chains_gone:  # a summary of the whole store read them too
            con.execute("DELETE FROM loop_summaries WHERE study IS NULL")
        if touched_prompts:
            con.execute(
                """DELETE FROM prompts WHERE prompt_key IN (SELECT unnest(?))
                   AND prompt_key NOT IN (SELECT prompt_key FROM study_prompts)
                   AND prompt_key NOT IN (SELECT DISTINCT prompt_key FROM generations)""",
                [sorted(touched_prompts)],
            )
        after = _counts(con)
        result: dict[str, Any] = {t: before[t] - after[t] for t in before}
        result["removed_models"] = sorted(before_models - set(_names(con, "SELECT name FROM models")))
        result["removed_studies"] = sorted(before_studies - set(_names(con, "SELECT name FROM studies")))
        result["dry_run"] = dry_run
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("ROLLBACK" if dry_run else "COMMIT")
    return result
