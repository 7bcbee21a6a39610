"""Removing models, studies and prompts from a store (``monoculture rm``).

What goes with each:

* ``--model NAME``: every generation of the model, the model, and its place in any study.
* ``--study NAME``: the study (its row, its model and prompt lists) and the generations that only
  it accounts for: those of its models on its prompts, unless another study has the same model
  and prompt. A model or prompt it listed goes too once no other study lists it and no
  generation is left that uses it.
* ``--prompt ID``: every prompt with that id (or prompt key), with its generations and its place
  in any study. An id two prompts share (the state issue 16.4 left stores in) removes both.

After any of these, a model or prompt that the removal touched and that is left with no study
and no generation is removed as well (an imported model whose answers are gone is noise in
``ls``). Embeddings are kept: they are a cache keyed by text, reused if the same text comes back,
and never read without a generation. Measurement results are kept: they record what was
measured at the time, and measuring again writes new ones. Probe and ecosystem tables are
separate features and are not touched.

Everything happens in one transaction; ``dry_run`` runs it and rolls it back, so the counts it
prints are exactly what a real run removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monoculture.errors import UserError


def _names(con, sql: str, params: list | None = None) -> list[str]:
    return [r[0] for r in con.execute(sql, params or []).fetchall()]


def _resolve(
    con, *, models: Sequence[str], studies: Sequence[str], prompts: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """The names given, checked: an unknown one is an error listing what there is."""
    have_m = set(_names(con, "SELECT name FROM models"))
    have_s = set(_names(con, "SELECT name FROM studies"))
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


def _counts(con) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("studies", "models", "prompts", "generations")}


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
        for study in s:
            touched_models |= set(_names(con, "SELECT model FROM study_models WHERE study = ?", [study]))
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
        # orphans: touched, in no study, with no generation left
        if touched_models:
            con.execute(
                """DELETE FROM models WHERE name IN (SELECT unnest(?))
                   AND name NOT IN (SELECT model FROM study_models) AND name NOT IN (SELECT DISTINCT model FROM generations)""",
                [sorted(touched_models)],
            )
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
