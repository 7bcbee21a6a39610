"""What an image loop did, measured: CLIP drift, convergence, diversity and motifs of the images,
the caption chain measured as text, and thumbnails for the report.

Every figure comes from D's functions (:mod:`monoculture.loops.dynamics`,
:mod:`monoculture.loops.motifs`) on the unit CLIP vectors the runner cached in the store's
``embeddings`` table, so summarising loads no model. Two readings are particular to images
(``DEVIATIONS.md``, "Image loops"):

- An image chain's step 0 is a text (the seed prompt), not an image. Image drift and
  convergence therefore take the chain's **first image** as its origin: drift at round t is
  cos(image_t, image_1), and convergence's ``seeds_value`` is the same mean over the first
  images. Both are reported with ``step`` = the round (the first image's row is round 1).
  ``prompt_match`` adds the cross-modal view: cos(CLIP image_t, CLIP text of the seed prompt)
  per round, which is on CLIP's own image-text scale (about 0.2-0.35 for a matching pair on the
  real models), comparable between rounds and models, not with the image-image cosines.
- Captions are a text chain (step 0 the seed prompt, step t the caption of image t), measured
  like text chains but embedded with the same CLIP model's text tower.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from monoculture.hashing import text_hash
from monoculture.loops.images import image_bytes, image_keys
from monoculture.loops.tables import read_steps
from monoculture.store import Store

#: Thumbnails' edge in pixels (the report inlines them; 64 x 64 PNGs are about 8-12 KB).
THUMB = 64

METHOD = (
    "Image loops (after Hintze et al. 2025): each round a text-to-image model draws the previous caption (the seed "
    "prompt first) and a captioner describes the image. Images are embedded with CLIP (unit image features). Image drift "
    "at round t = mean over chains of cos(image_t, image_1); convergence = mean cos between round-t images of chains "
    "whose seeds differ, beside the same for their first images (intervals resample seeds); diversity = Vendi of the "
    "last images against the Vendi of the first images; prompt match = mean cos(CLIP image_t, CLIP text of the seed "
    "prompt). Motifs cluster the last images (k-means on CLIP vectors) and are named by their captions' distinctive "
    "words. Captions are measured as a text chain embedded with CLIP's text tower."
)


def _has_embeddings(store: Store) -> bool:
    """Whether the store has an embedding cache (a read-only store cannot create one)."""
    rows = store.con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'embeddings'").fetchall()
    return bool(rows and rows[0][0])


def _vectors(store: Store, embedder: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
    from monoculture.embed import _load

    if not _has_embeddings(store):
        return {}
    return {h: v for h, (v, _) in _load(store, embedder, list(dict.fromkeys(hashes))).items()}


def _pick_embedder(store: Store, hashes: Sequence[str]) -> str | None:
    """The CLIP image embedder with vectors for the most of these images (the runner stores
    one per study spec; a spec changed between runs leaves two)."""
    if not _has_embeddings(store):
        return None
    want = pd.DataFrame({"text_hash": list(dict.fromkeys(hashes))})  # noqa: F841 - read by the SQL
    rows = store.con.execute(
        """
        SELECT embedder, count(*) AS n FROM embeddings
        WHERE embedder LIKE 'clip-image:%' AND text_hash IN (SELECT text_hash FROM want)
        GROUP BY embedder ORDER BY n DESC, embedder LIMIT 1
        """
    ).fetchall()
    return str(rows[0][0]) if rows else None


def thumbnail(png: bytes, size: int = THUMB) -> str:
    """A ``size`` x ``size`` PNG of the image, base64 (for a data: URL; decoded and re-encoded
    here, so what the report inlines is always a plain PNG this code wrote)."""
    from monoculture.loops.image_stages import png_image

    img = png_image(png)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)  # 64 x 64: optimising costs nothing here
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_frame(store: Store, study: str | None) -> pd.DataFrame:
    """The image chains' long frame (each round's step ``key`` in it) with its image's cache hash
    (hashed by DuckDB: the PNGs stay in the store; :func:`_thumbnails` reads the few it shows)."""
    frame = read_steps(store, study, kind="image")
    if frame.empty:
        return frame.assign(image_hash=pd.Series(dtype=object))
    frame = frame.drop_duplicates(["chain_id", "step"]).reset_index(drop=True)
    hashes = image_keys(store, [k for k in frame["key"] if k])
    frame["image_hash"] = [hashes.get(k) if k else None for k in frame["key"]]
    return frame


def image_summary(
    store: Store,
    study: str | None = None,
    *,
    seed: int = 0,
    bootstrap: int = 1000,
    embedder: str | None = None,
    thumbnail_chains: int = 6,
    motif_thumbnails: int = 3,
) -> dict[str, Any] | None:
    """The image chains of ``study`` (all when None) measured; None when there are none.

    Keys: ``chains``, ``labels`` ({label, chains, rounds_min, rounds_max}), ``embedder``,
    ``drift``, ``convergence``, ``diversity``, ``prompt_match`` (row dicts, ``ci`` as [lo, hi]),
    ``motifs`` (D's ``MotifResult.to_dict()`` of the last images, each motif with
    ``thumbnail_chains``), ``thumbnails`` (list of {chain_id, label, seed_id, step, motif,
    caption, png_base64}, one per chain and round: the first, middle and last image of up to
    ``thumbnail_chains`` chains, and the last image of up to ``motif_thumbnails`` chains nearest
    each motif's centre; ``motif`` is set on last images), ``captions``
    ({drift, convergence, diversity, lexical}: the caption chain as text), ``notes``,
    ``methods``. Every figure is a float or None (JSON-safe)."""
    from monoculture.loops import dynamics
    from monoculture.loops.motifs import find_motifs

    frame = image_frame(store, study)
    if frame.empty:
        return None
    notes: list[str] = []
    rounds = frame[frame["step"] > 0]
    hashes = [h for h in rounds["image_hash"] if h]
    name = embedder if embedder and ":" in embedder else (f"clip-image:{embedder}" if embedder else _pick_embedder(store, hashes))
    ivec = _vectors(store, name, hashes) if name else {}
    tname = "clip-text:" + name.split(":", 1)[1] if name else None
    tvec = _vectors(store, tname, [text_hash(str(t)) for t in frame["text"]]) if tname else {}
    missing = sum(1 for h in hashes if h not in ivec)
    if name is None:
        notes.append("no CLIP vectors in the store for these images: run the loop again to embed them")
    elif missing:
        notes.append(f"{missing} of {len(hashes)} images have no {name} vector yet and are left out (the next run embeds them)")

    labels = [
        {"label": str(lab), "chains": int(g["chain_id"].nunique()), "rounds_min": int(mx.min()), "rounds_max": int(mx.max())}
        for lab, g in frame.groupby("label", sort=True)
        for mx in [g.groupby("chain_id")["step"].max()]
    ]
    out: dict[str, Any] = {
        "chains": int(frame["chain_id"].nunique()),
        "labels": labels,
        "embedder": name,
        "drift": [],
        "convergence": [],
        "diversity": [],
        "prompt_match": [],
        "motifs": None,
        "thumbnails": [],
        "captions": {"drift": [], "convergence": [], "diversity": [], "lexical": []},
        "notes": notes,
        "methods": METHOD,
    }

    # Images: rows with a vector, the first image as origin (step 0 of D's functions).
    img = rounds[rounds["image_hash"].map(lambda h: h in ivec).to_numpy(dtype=bool)].copy()
    if not img.empty:
        first = img.groupby("chain_id")["step"].transform("min")
        img = img[(first == 1).to_numpy()]  # a chain whose first image has no vector has no origin
    if rounds.empty:
        notes.append("no image chain has a round yet: run the loop to draw them")
    elif not img.empty:
        X = np.stack([ivec[h] for h in img["image_hash"]])
        shifted = img.assign(step=img["step"] - 1)

        def back(df: pd.DataFrame) -> list[dict]:
            return dynamics.frame_records(df.assign(step=df["step"] + 1)) if "step" in df.columns else dynamics.frame_records(df)

        out["drift"] = back(dynamics.drift(shifted, X, bootstrap=bootstrap, seed=seed))
        out["convergence"] = back(dynamics.convergence(shifted, X, bootstrap=bootstrap, seed=seed))
        try:
            div = dynamics.diversity_loss(shifted, X, bootstrap=bootstrap, seed=seed)
            div[["final_step_min", "final_step_max"]] += 1  # back to rounds
            out["diversity"] = dynamics.frame_records(div)
        except ValueError as e:  # too few seeds for an interval is a note, not a failed summary
            notes.append(f"image diversity not computed: {e}")
        out["prompt_match"] = _prompt_match(frame, img, X, tvec, bootstrap=bootstrap, seed=seed)

        final = dynamics.final_rows(img)
        Xf = np.stack([ivec[h] for h in final["image_hash"]])
        motifs = find_motifs(final, Xf, seed=seed)
        out["motifs"] = motifs.to_dict()
        out["thumbnails"] = _thumbnails(store, frame, final, motifs, out["motifs"], thumbnail_chains, motif_thumbnails)
    elif name is not None:
        notes.append("no image with a CLIP vector starts its chain; nothing to measure on images")

    # Captions as a text chain: the seed prompt, then every caption, with CLIP text vectors.
    cap = frame[frame["text"].map(lambda t: isinstance(t, str) and text_hash(t) in tvec).to_numpy(dtype=bool)]
    if tvec and cap["step"].gt(0).any():
        Xc = np.stack([tvec[text_hash(t)] for t in cap["text"]])
        caps = out["captions"]
        caps["drift"] = dynamics.frame_records(dynamics.drift(cap, Xc, bootstrap=bootstrap, seed=seed))
        caps["convergence"] = dynamics.frame_records(dynamics.convergence(cap, Xc, bootstrap=bootstrap, seed=seed))
        try:
            caps["diversity"] = dynamics.frame_records(dynamics.diversity_loss(cap, Xc, bootstrap=bootstrap, seed=seed))
        except ValueError as e:
            notes.append(f"caption diversity not computed: {e}")
        caps["lexical"] = dynamics.frame_records(dynamics.lexical_by_step(frame.drop(columns=["key", "image_hash"])))
    return out


def _prompt_match(
    frame: pd.DataFrame, img: pd.DataFrame, X: np.ndarray, tvec: dict[str, np.ndarray], *, bootstrap: int, seed: int
) -> list[dict]:
    """Per (label, round): mean over chains of cos(CLIP image_t, CLIP text of the seed prompt).
    That is D's drift on a frame whose step 0 is the seed prompt's text vector and whose later
    steps are the images (CLIP puts both in one space), so the interval is drift's (seeds
    resampled with all their chains)."""
    from monoculture.loops.dynamics import drift, frame_records

    seeds = frame[frame["step"] == 0]
    seeds = seeds[seeds["text"].map(lambda t: text_hash(str(t)) in tvec).to_numpy(dtype=bool)]
    if seeds.empty:
        return []
    T = np.stack([tvec[text_hash(str(t))] for t in seeds["text"]])
    if T.shape[1] != X.shape[1]:
        return []  # a text tower of another width: not the same CLIP model
    both = pd.concat([seeds, img])
    d = drift(both, np.concatenate([T, X]), bootstrap=bootstrap, seed=seed)
    return frame_records(d[d["step"] > 0])  # step 0 would be the prompt against itself


def _thumbnails(
    store: Store, frame: pd.DataFrame, final: pd.DataFrame, motifs: Any, motifs_dict: dict, n_chains: int, per_motif: int
) -> list[dict]:
    """First, middle and last image of a few chains (spread over labels and seeds: the first
    replicate of each seed, labels in turn), and each motif's most central last images."""
    by_key = {(r.chain_id, int(r.step)): r for r in frame[frame["step"] > 0].itertuples(index=False)}
    last = frame.groupby("chain_id")["step"].max()
    out: dict[tuple[str, int], Any] = {}  # (chain, round) -> its frame row, in order of choice
    motif_of = dict(zip(motifs.assignments["chain_id"].astype(str), motifs.assignments["motif"].astype(int)))
    final_step = final.set_index("chain_id")["step"]

    def add(chain_id: str, step: int) -> None:
        r = by_key.get((chain_id, step))
        if r is not None and r.image_hash is not None and (chain_id, step) not in out:
            out[(chain_id, step)] = r

    firsts = frame[(frame["step"] == 0)].sort_values(["replicate", "seed_id", "label"], kind="stable")
    order = []
    seen_seeds: dict[str, set[str]] = {}
    for r in firsts.itertuples(index=False):  # round-robin over labels so every pipeline pair is shown
        if str(r.seed_id) not in seen_seeds.setdefault(str(r.label), set()):
            seen_seeds[str(r.label)].add(str(r.seed_id))
            order.append(r)
    labels = sorted({str(r.label) for r in order})
    queues = {lab: [r for r in order if str(r.label) == lab] for lab in labels}
    picked: list[str] = []
    while len(picked) < n_chains and any(queues.values()):
        for lab in labels:
            if queues[lab] and len(picked) < n_chains:
                picked.append(queues[lab].pop(0).chain_id)
    for cid in picked:
        t_last = int(last.get(cid, 0))
        if t_last < 1:
            continue
        for t in dict.fromkeys([1, (1 + t_last) // 2, t_last]):
            add(cid, t)

    assigned = motifs.assignments
    for m in motifs_dict.get("motifs", []):
        members = assigned[assigned["motif"] == m["motif"]].sort_values("similarity", ascending=False)
        ids = [str(c) for c in members["chain_id"].head(per_motif)]
        m["thumbnail_chains"] = ids  # their last images are among the thumbnails
        for cid in ids:
            add(cid, int(final_step[cid]))
    pngs = image_bytes(store, [r.key for r in out.values()])
    thumbs = []
    for (chain_id, step), r in out.items():
        is_final = chain_id in final_step.index and int(final_step[chain_id]) == step
        thumbs.append(
            {
                "chain_id": chain_id,
                "label": str(r.label),
                "seed_id": str(r.seed_id),
                "step": int(step),
                "motif": motif_of.get(chain_id) if is_final else None,
                "caption": str(r.text),
                "png_base64": thumbnail(pngs[r.key]),
            }
        )
    return thumbs
