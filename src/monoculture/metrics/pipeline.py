"""Every metric of METRICS.md for one study, in one call.

The pipeline cleans the input once (dropping, and counting, rows no metric can use), builds one
cell index, and then computes each family of metrics as per-prompt arrays. All intervals come
from one seeded (B x P) resampling matrix shared by every figure, so any two figures are
resampled with the same prompts and their differences are paired. It draws prompt clusters
(a group's translations or paraphrases together; an ungrouped prompt alone), and
separability's folds keep clusters whole.

Departures from METRICS.md and readings of what it leaves open are listed in DEVIATIONS.md
beside this file; those visible here: distinct_k needs an explicit tau (no threshold is valid
for every embedder), the diagonal of the similarity matrix holds W_m, and empty texts are
dropped with the other unusable rows.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .lexical import lexical_table
from .lineage import accent_retention, group_contrast, mantel_test
from .partition import Equivalence, partition_responses
from .responses import (
    CellIndex,
    MetricsInputError,
    ResponseSet,
    _codes,
    blank_texts,
    calibrate,
    index_cells,
    vector_defects,
)
from .separability import Separability, nearest_peers, style_separability
from .similarity import (
    homogeneity_estimate,
    off_prompt_floor,
    pair_similarity,
    per_prompt_floor,
    per_prompt_homogeneity,
    prompt_means,
    reference_comparison,
)
from .stats import (
    Estimate,
    PairedDifference,
    bootstrap_means,
    paired_bootstrap,
    resample_counts,
)
from .voices import VoicesResult, voices_analysis

FLOOR_LIMIT = 0.2  # |F| beyond this after calibration is worth a note (METRICS.md: "check that it is")


#: The stages measure_all reports to its ``progress`` callback, in order ("lexical_wait" only
#: when the lexical figures are computed).
STAGES = ("prepare", "similarity", "voices", "partition", "bootstrap", "separability", "lineage", "lexical_wait")


class _Stopwatch:
    """Seconds per stage, kept with the result so a slow study shows where its time went."""

    def __init__(self, on_lap: Callable[[str], None] | None = None) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()
        self._on_lap = on_lap  # measure's progress bar: one step per finished stage

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._t, 4)
        self._t = now
        if self._on_lap is not None:
            self._on_lap(name)


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars and arrays become Python values."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, Estimate):
        return _clean(x.to_dict())
    return x


@dataclass
class Group:
    """One value of one attribute, e.g. family=llama."""

    key: str
    attribute: str
    value: str
    members: list[str]


@dataclass
class MeasureResult:
    """Tables of every figure, the per-prompt arrays they came from, and what was skipped."""

    models: list[str]
    prompts: list[str]
    per_model: pd.DataFrame
    similarity: pd.DataFrame
    similarity_prompts: pd.DataFrame
    per_prompt: pd.DataFrame
    loo_per_prompt: pd.DataFrame
    groups: pd.DataFrame
    headline: dict
    skipped: dict
    settings: dict
    mu: np.ndarray | None = None
    lexical: pd.DataFrame | None = None
    separability: Separability | None = None
    pairwise_auc: pd.DataFrame | None = None
    lineage: pd.DataFrame | None = None
    accent: pd.DataFrame | None = None
    what_if_removed: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage; not in the JSON, which stays deterministic
    voices_detail: VoicesResult | None = field(default=None, repr=False)
    distinct_per_prompt: np.ndarray | None = field(default=None, repr=False)
    pair_per_prompt: np.ndarray | None = field(default=None, repr=False)
    counts: np.ndarray | None = field(default=None, repr=False)

    def compare(self, a: str, b: str, metric: str = "leave_one_out") -> PairedDifference:
        """Paired bootstrap over prompts of a model's (or group's) figure minus another's.

        ``metric``: leave_one_out, own_range, within_model_similarity, distinct_k (models) or
        group_loss (group keys).
        """
        vd = self.voices_detail
        if vd is None or self.pair_per_prompt is None:
            raise MetricsInputError("compare() needs the per-prompt detail that measure_all() keeps on its result")
        if metric == "group_loss":
            arrays = vd.group_loss
            if a not in arrays or b not in arrays:
                raise MetricsInputError(f"unknown group {a if a not in arrays else b!r}; known: {sorted(arrays)}")
            va, vb = arrays[a], arrays[b]
        else:
            source = {
                "leave_one_out": vd.loo,
                "own_range": vd.own_range,
                "within_model_similarity": np.einsum("pmm->pm", self.pair_per_prompt),
                "distinct_k": self.distinct_per_prompt,
            }
            if metric not in source or source[metric] is None:
                raise MetricsInputError(
                    f"cannot compare on {metric!r}; choose from {sorted(k for k, v in source.items() if v is not None)}"
                )
            for name in (a, b):
                if name not in self.models:
                    raise MetricsInputError(f"unknown model {name!r}")
            va = source[metric][:, self.models.index(a)]
            vb = source[metric][:, self.models.index(b)]
        return paired_bootstrap(va, vb, counts=self.counts, level=self.settings["level"])

    def to_json_dict(self) -> dict:
        pm = self.per_model

        def est(prefix: str, row: pd.Series) -> dict:
            return {
                "value": row[prefix],
                "ci": [row[f"{prefix}_lo"], row[f"{prefix}_hi"]],
                "prompts": row[f"{prefix}_prompts"],
                "few_prompts": bool(row[f"{prefix}_prompts"] < 10),
            }

        out: dict[str, Any] = {
            "models": self.models,
            "n_prompts": len(self.prompts),
            "settings": self.settings,
            "similarity_matrix": self.similarity.to_numpy(),
            "similarity_matrix_prompts": self.similarity_prompts.to_numpy(),
            "within_model_similarity": {m: pm.at[m, "W"] for m in self.models},
            "within_model_similarity_ci": {m: est("W", pm.loc[m]) for m in self.models},
            "homogeneity": self.headline["homogeneity"],
            "off_prompt_floor": self.headline["off_prompt_floor"],
            "voices": self.headline["voices"],
            "own_range": {m: est("own_range", pm.loc[m]) for m in self.models},
            "leave_one_out": {m: est("loo", pm.loc[m]) for m in self.models},
            "nearest_peer": {
                m: {
                    "peer": pm.at[m, "nearest_peer"],
                    "similarity": pm.at[m, "nearest_peer_similarity"],
                    "within": pm.at[m, "W"],
                    "indistinguishable": pm.at[m, "indistinguishable"],
                }
                for m in self.models
            },
            "groups": {
                key: {
                    "attribute": r["attribute"],
                    "group": r["group"],
                    "members": r["members"],
                    "value": r["loss"],
                    "ci": [r["loss_lo"], r["loss_hi"]],
                    "prompts": r["loss_prompts"],
                    "baseline": r["baseline"],
                    "baseline_ci": [r["baseline_lo"], r["baseline_hi"]],
                    "baseline_draws": r["baseline_draws"],
                    "excess": r["excess"],
                    "excess_ci": [r["excess_lo"], r["excess_hi"]],
                    "excess_p": r["excess_p"],
                    "highlighted": r["highlighted"],
                }
                for key, r in self.groups.iterrows()
            },
            "what_if_removed": self.what_if_removed,
            "skipped": self.skipped,
            "notes": self.notes,
            "mu": self.mu,
            "calibration": self.headline.get("calibration"),
        }
        if "reference" in self.headline:
            out["reference"] = self.headline["reference"]
        if "distinct_k" in pm.columns:
            out["distinct_k"] = {m: est("distinct_k", pm.loc[m]) for m in self.models}
        if self.separability is not None:
            s = self.separability
            out["separability"] = {
                **s.balanced_accuracy.to_dict(),
                "chance": s.chance,
                "folds": s.n_splits,
                "fold_scores": s.fold_scores,
                "pairwise_method": s.method,
                "pairwise_auc": self.pairwise_auc.to_numpy() if self.pairwise_auc is not None else None,
            }
        if self.lineage is not None:
            out["lineage"] = {a: r.to_dict() for a, r in self.lineage.iterrows()}
        if self.accent is not None:
            out["accent_retention"] = {d: r.to_dict() for d, r in self.accent.iterrows()}
        if self.lexical is not None:
            out["lexical"] = {m: r.to_dict() for m, r in self.lexical.iterrows()}
        return _clean(out)


@dataclass
class PromptFigures:
    """The per-prompt figures of a set of prompts, along the prompt axis: the similarity
    Gram means (P, M, M), voices (V, V_m, L_m, L_G and its baseline) and distinct_k.

    Each prompt's figures depend on its own rows alone (and on the study's model list and
    seed, which fix the random groups), so the figures of slices of prompts, put end to end,
    are the figures of the whole: what lets a study be measured in shards.
    """

    pair: np.ndarray
    voices: VoicesResult
    distinct: np.ndarray | None


def prompt_figures(
    X: np.ndarray,
    index: CellIndex,
    texts: list[str] | None,
    masks: dict[str, np.ndarray],
    *,
    q: float,
    n_random: int,
    seed: int,
    tau: float | None,
    equivalent: Equivalence | None,
) -> PromptFigures:
    """The per-prompt figures of the prompts ``index`` holds (calibrated rows ``X``), computed
    as measure_all computes them."""
    with threadpool_limits(limits=1, user_api="blas"):
        pair = pair_similarity(X, index)
        vr = voices_analysis(X, index, masks, q=q, n_random=n_random, seed=seed)
        distinct = None
        if tau is not None or equivalent is not None:
            distinct = partition_responses(X, index, tau=tau, texts=texts, equivalent=equivalent).distinct
    return PromptFigures(pair, vr, distinct)


#: measure_all's ``per_prompt`` hook: (the cleaned study, the group masks, prompt_figures'
#: keyword options) -> the figures of all the study's prompts.
PerPromptHook = Callable[["_Study", dict[str, np.ndarray], dict[str, Any]], PromptFigures]


def _prepare(
    rs: ResponseSet, center: bool | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict, np.ndarray | None]:
    """Rows every metric can use, each dropped row counted under the first reason it fails.

    The one place where responses are cleaned and calibrated: measure() hands its raw vectors
    here (NaN rows for texts it did not embed), so the calibration mean, the rows it drops
    and the off-prompt-floor check are the same whether the study came from the CLI or not.
    """
    X = np.asarray(rs.X, dtype=np.float64)
    model = np.asarray(rs.model, dtype=np.int64)
    prompt = np.asarray(rs.prompt, dtype=np.int64)
    n = len(model)
    reasons: dict[str, int] = {}
    keep = np.ones(n, dtype=bool)

    def drop(name: str, bad: np.ndarray) -> None:
        bad = bad & keep
        reasons[name] = int(bad.sum())
        keep[bad] = False

    drop("invalid_code", (model < 0) | (model >= len(rs.model_names)) | (prompt < 0) | (prompt >= len(rs.prompt_ids)))
    if rs.texts is not None:
        drop("empty_text", blank_texts(rs.texts))
    nonfinite, zero = vector_defects(X)
    drop("nonfinite_embedding", nonfinite)
    drop("zero_embedding", zero)
    mu = None
    if center is not False and center is not None:
        cal = calibrate(np.where(keep[:, None], X, np.nan), None if center is True else center)
        X, mu = cal.X, cal.mu
        drop("equal_to_calibration_mean", cal.zero)
    else:
        Xk = X if keep.all() else np.where(keep[:, None], X, 0.0)
        norm = np.sqrt(np.einsum("ij,ij->i", Xk, Xk))
        X = Xk / np.where(keep, norm, 1.0)[:, None]
        reasons["equal_to_calibration_mean"] = 0
    rows = np.flatnonzero(keep)
    return X, model, prompt, rows, reasons, mu


def measure_all(
    rs: ResponseSet,
    groups: dict[str, dict[str, str]] | None = None,
    what_if_removed: Sequence[str] = (),
    reference: str | None = None,
    derivatives: dict[str, str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    q: float = 1.0,
    tau: float | None = None,
    equivalent: Equivalence | None = None,
    *,
    center: bool | np.ndarray = False,
    family: str | None = None,
    n_random: int = 20,
    n_perm: int = 999,
    floor_pairs: int = 10_000,
    separability: bool = True,
    pairwise: str | None = "multinomial",
    lexical: bool = True,
    level: float = 0.95,
    n_jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    per_prompt: PerPromptHook | None = None,
) -> MeasureResult:
    """Measure a study: similarity, voices, leave-one-out, groups, partition, lexical,
    separability and lineage, each with its interval over prompts.

    ``groups`` maps an attribute to {model: value}; every value becomes a group G with its
    L_G and the random-group baseline of the same size. ``what_if_removed`` names groups
    (value or "attribute=value") or models to highlight. ``reference`` names a model (its
    members' H is its own W, e.g. human answers from different people) or a group. Rows are
    used as given unless ``center`` is True (calibrate on this study) or an array (a mu from
    another study). distinct_k needs ``tau`` or ``equivalent``: a threshold that has not been
    calibrated for the embedder would give a number without meaning, so there is no default.
    ``progress`` is called with each stage's name as it finishes (:data:`STAGES`, in order).
    ``per_prompt`` computes the per-prompt figures in its own way (:data:`PerPromptHook`,
    e.g. in shards of prompts on a Ray cluster); the result must be what
    :func:`prompt_figures` gives for the whole study.
    """
    if n_boot < 1:
        raise MetricsInputError(f"n_boot must be at least 1, got {n_boot}")
    # Every product here is small (per-prompt Gram matrices, B x P resampling); multithreaded
    # BLAS only adds synchronisation to them, and on a busy machine makes them several times
    # slower. Separability raises the limit for its own, larger fits.
    # The side thread computes the lexical figures while the embedding metrics run.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(1, thread_name_prefix="lexical") as side:
        return _measure_all(
            rs,
            groups,
            what_if_removed,
            reference,
            derivatives,
            n_boot,
            seed,
            q,
            tau,
            equivalent,
            center=center,
            family=family,
            n_random=n_random,
            n_perm=n_perm,
            floor_pairs=floor_pairs,
            separability=separability,
            pairwise=pairwise,
            lexical=lexical,
            level=level,
            n_jobs=n_jobs,
            side=side,
            progress=progress,
            per_prompt=per_prompt,
        )


@dataclass
class _Study:
    """The cleaned study every stage reads: usable rows only, models and prompts recoded to
    those that kept a row, one cell index and one bootstrap count matrix."""

    X: np.ndarray
    model: np.ndarray
    prompt: np.ndarray
    texts: list[str] | None
    models: list[str]
    prompts: list[str]
    index: CellIndex
    cluster: np.ndarray  # (P,) cluster code of each prompt
    counts: np.ndarray  # (B, P): each prompt drawn as often as its cluster
    mu: np.ndarray | None
    skipped: dict[str, Any]
    notes: list[str]

    @property
    def n_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if self.cluster.size else 0

    @property
    def unit(self) -> str:
        """What the bootstrap resamples and the folds keep together, for the methods section."""
        return "cluster (prompt group)" if self.n_clusters < self.P else "prompt"

    @property
    def M(self) -> int:
        return len(self.models)

    @property
    def P(self) -> int:
        return len(self.prompts)


@dataclass
class _Reference:
    """The reference source (a model, or a group's members) and the models compared with it."""

    name: str
    kind: str
    members: np.ndarray
    others: np.ndarray


@dataclass
class _Similarity:
    pair: np.ndarray  # (P, M, M) per-prompt similarities, diagonal W
    C: np.ndarray
    C_n: np.ndarray
    W: np.ndarray
    H: Estimate  # among the models, the reference left out
    F: dict
    members: np.ndarray | None  # the models H is over; None: all


def _measure_all(
    rs,
    groups,
    what_if_removed,
    reference,
    derivatives,
    n_boot,
    seed,
    q,
    tau,
    equivalent,
    *,
    center,
    family,
    n_random,
    n_perm,
    floor_pairs,
    separability,
    pairwise,
    lexical,
    level,
    n_jobs,
    side: ThreadPoolExecutor,
    progress: Callable[[str], None] | None = None,
    per_prompt: PerPromptHook | None = None,
) -> MeasureResult:
    """The stages in order: prepare, lexical (in the side thread), similarity, groups and
    voices, partition, one bootstrap pass and the tables, separability, lineage."""
    clock = _Stopwatch(progress)
    st = _prepare_study(rs, center, n_boot, seed)
    clock.lap("prepare")
    lexical_job = _start_lexical(st, lexical, side)
    group_list = _resolve_groups(groups or {}, st.models, st.skipped)
    highlight = _resolve_highlights(what_if_removed, group_list, st.models)
    ref = _resolve_reference(reference, st.models, group_list) if reference is not None else None
    masks = {g.key: np.isin(st.models, g.members) for g in group_list}
    # A sharded run (monoculture.executors.ray_measure) computes the per-prompt figures of
    # slices of prompts elsewhere and hands them back whole; everything after is the same.
    pre = per_prompt(st, masks, dict(q=q, n_random=n_random, seed=seed, tau=tau, equivalent=equivalent)) if per_prompt else None
    sim = _similarity_stage(st, floor_pairs, seed, level, ref, pair=pre.pair if pre is not None else None)
    clock.lap("similarity")
    vr = pre.voices if pre is not None else voices_analysis(st.X, st.index, masks, q=q, n_random=n_random, seed=seed)
    clock.lap("voices")
    if pre is not None and (tau is not None or equivalent is not None):
        distinct = pre.distinct
    else:
        distinct = _partition_stage(st, tau, equivalent)
    clock.lap("partition")
    split = _bootstrap_stage(st, sim, vr, distinct, list(masks), level)
    per_model = _per_model_table(st, sim, split)
    result = _assemble(
        st,
        sim,
        vr,
        distinct,
        split,
        per_model,
        group_list,
        highlight,
        ref,
        level,
        settings={
            "n_boot": n_boot,
            "seed": seed,
            "q": q,
            "tau": tau,
            "equivalence": "cosine" if equivalent is None else getattr(equivalent, "__name__", "callable"),
            "level": level,
            "n_random": n_random,
            "n_perm": n_perm,
            "floor_pairs": floor_pairs,
            "embeddings": "centred here" if st.mu is not None else "as given",
            "resampling_unit": st.unit,
            "clusters": st.n_clusters,
        },
    )
    clock.lap("bootstrap")
    if separability:
        _separability_stage(result, st, pairwise, level, seed, n_jobs)
    clock.lap("separability")
    if group_list:
        result.lineage = _lineage(group_list, st.models, sim.C, n_perm, seed)
    if derivatives:
        fam_attr = family if family is not None else ("family" if groups and "family" in groups else None)
        result.accent = _accent(derivatives, st.models, groups or {}, fam_attr, sim.pair, st.counts, level, st.notes)
    clock.lap("lineage")
    if lexical_job is not None:
        result.lexical, seconds = lexical_job.result()
        clock.lap("lexical_wait")
        clock.laps["lexical"] = round(seconds, 4)
    result.timings = clock.laps
    return result


def _prepare_study(rs: ResponseSet, center, n_boot: int, seed: int) -> _Study:
    """Clean the rows, recode to the models and prompts that still have rows, index the cells
    and draw the resampling; refuse a study with nothing to compare."""
    X_all, model_all, prompt_all, rows, reasons, mu = _prepare(rs, center)
    notes: list[str] = []
    skipped: dict[str, Any] = dict(reasons)
    used_models = np.unique(model_all[rows])
    used_prompts = np.unique(prompt_all[rows])
    used = set(used_models.tolist())
    skipped["models_without_responses"] = [name for i, name in enumerate(rs.model_names) if i not in used]
    skipped["prompts_without_responses"] = int(len(rs.prompt_ids) - len(used_prompts))
    if len(used_models) < 2:
        present = ", ".join(rs.model_names[i] for i in used_models) or "none"
        dropped = sum(reasons.values())
        raise MetricsInputError(
            f"need responses from at least 2 models to compare, got {len(used_models)} ({present})"
            + (f" after dropping {dropped} unusable rows" if dropped else "")
        )
    models = [rs.model_names[i] for i in used_models]
    prompts = [rs.prompt_ids[i] for i in used_prompts]
    m_map = np.full(len(rs.model_names), -1, dtype=np.int64)
    m_map[used_models] = np.arange(len(used_models))
    p_map = np.full(len(rs.prompt_ids), -1, dtype=np.int64)
    p_map[used_prompts] = np.arange(len(used_prompts))
    X = X_all if len(rows) == len(X_all) else X_all[rows]
    model = m_map[model_all[rows]]
    prompt = p_map[prompt_all[rows]]
    texts = [rs.texts[i] for i in rows] if rs.texts is not None else None
    sample = np.asarray(rs.sample)[rows] if rs.sample is not None else None
    M, P = len(models), len(prompts)
    index: CellIndex = index_cells(model, prompt, M, P, sample)
    multi = index.models_per_prompt >= 2
    skipped["prompts_single_model"] = int((~multi).sum())
    if not multi.any():
        raise MetricsInputError("no prompt was answered by at least 2 models, so no model can be compared with another")
    no_repeat = [models[m] for m in range(M) if not (index.counts[:, m] >= 2).any()]
    skipped["models_without_repeats"] = no_repeat
    if no_repeat:
        notes.append(f"within-model similarity and own range need k >= 2; undefined for {len(no_repeat)} model(s)")
    cluster, counts = _cluster_resampling(rs, used_prompts, n_boot, seed)
    return _Study(X, model, prompt, texts, models, prompts, index, cluster, counts, mu, skipped, notes)


def _cluster_resampling(rs: ResponseSet, used_prompts: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cluster code per used prompt and the (B, P) bootstrap counts that draw whole clusters.

    Drawing clusters with replacement and giving each prompt its cluster's multiplicity keeps
    every downstream figure a weighted mean over prompts, so nothing else changes. With every
    prompt its own cluster this is the prompt bootstrap, draw for draw.
    """
    P = len(used_prompts)
    if rs.clusters is None:
        return np.arange(P, dtype=np.int64), resample_counts(P, n_boot, seed)
    _, cluster = _codes([rs.clusters[i] for i in used_prompts])
    return cluster, resample_counts(int(cluster.max()) + 1 if P else 0, n_boot, seed)[:, cluster]


def _start_lexical(st: _Study, lexical: bool, side: ThreadPoolExecutor):
    """Lexical figures need only the texts. They run beside the embedding metrics: tokenising
    holds the GIL on one core while the eigendecompositions and fits release it."""
    if lexical and st.texts is not None:
        return side.submit(_timed, _lexical, st.texts, st.model, st.index, st.models)
    if lexical:
        st.notes.append("lexical metrics not computed: the response set has no texts")
    return None


def _similarity_stage(
    st: _Study, floor_pairs: int, seed: int, level: float, ref: _Reference | None, pair: np.ndarray | None = None
) -> _Similarity:
    """C, W, the headline H (among the models only: a reference is what H is compared with,
    not one of the voices it averages) and the off-prompt floor. ``pair``: the per-prompt
    similarities when a sharded run computed them already."""
    if pair is None:
        pair = pair_similarity(st.X, st.index)
    C, C_n = prompt_means(pair)
    W = np.diag(C).copy()
    members = ref.others if ref is not None else None
    H = homogeneity_estimate(pair, st.counts, members, level=level)
    F = off_prompt_floor(st.X, st.index, floor_pairs, seed)
    if abs(F["value"]) > FLOOR_LIMIT and st.mu is not None:
        st.notes.append(f"off-prompt floor {F['value']:.3f} is far from 0 after calibration")
    return _Similarity(pair, C, C_n, W, H, F, members)


def _calibration_record(mu: np.ndarray | None, F: dict) -> dict:
    """What the embeddings were centred on, and METRICS.md's check that the floor is near 0.

    The digest is of mu as stored (float32, little-endian), so a reader can tell which mean
    two measurements used without comparing 384 numbers.
    """
    if mu is None:
        return {"centred": False, "mu_dims": None, "mu_norm": None, "mu_sha256": None, "floor_check": None}
    m = np.asarray(mu, dtype="<f4")
    f = F.get("value")
    ok = bool(abs(f) <= FLOOR_LIMIT) if f is not None and np.isfinite(f) else None
    return {
        "centred": True,
        "mu_dims": int(m.size),
        "mu_norm": float(np.linalg.norm(m.astype(np.float64))),
        "mu_sha256": hashlib.sha256(m.tobytes()).hexdigest()[:16],
        "floor_check": {"floor": f, "limit": FLOOR_LIMIT, "ok": ok},
    }


def _partition_stage(st: _Study, tau, equivalent) -> np.ndarray | None:
    if tau is not None or equivalent is not None:
        return partition_responses(st.X, st.index, tau=tau, texts=st.texts, equivalent=equivalent).distinct
    st.notes.append("distinct_k not computed: give tau (calibrated for this embedder) or an equivalence function")
    return None


def _bootstrap_stage(
    st: _Study, sim: _Similarity, vr: VoicesResult, distinct, keys: list[str], level: float
) -> dict[str, list[Estimate]]:
    """One bootstrap pass for every per-prompt mean, split back by figure."""
    blocks = {"voices": vr.voices[:, None], "loo": vr.loo, "own_range": vr.own_range, "W": np.einsum("pmm->pm", sim.pair)}
    if distinct is not None:
        blocks["distinct_k"] = distinct
    if keys:
        loss = np.column_stack([vr.group_loss[k] for k in keys])
        base = np.column_stack([vr.group_baseline[k] for k in keys])
        blocks["group_loss"] = loss
        blocks["group_base"] = base
        blocks["group_excess"] = np.where(np.isfinite(loss) & np.isfinite(base), loss - base, np.nan)
    ests = bootstrap_means(np.column_stack(list(blocks.values())), st.counts, level)
    split: dict[str, list[Estimate]] = {}
    pos = 0
    for name, arr in blocks.items():
        split[name] = ests[pos : pos + arr.shape[1]]
        pos += arr.shape[1]
    return split


def _per_model_table(st: _Study, sim: _Similarity, split: dict[str, list[Estimate]]) -> pd.DataFrame:
    index, models = st.index, st.models
    per_model = pd.DataFrame(index=pd.Index(models, name="model"))
    per_model["responses"] = index.counts.sum(axis=0)
    per_model["prompts"] = (index.counts > 0).sum(axis=0)
    per_model["mean_k"] = np.where(per_model["prompts"] > 0, per_model["responses"] / np.maximum(per_model["prompts"], 1), np.nan)
    for col in ("W", "own_range", "loo", "distinct_k"):
        if col not in split:
            continue
        per_model[col] = [e.value for e in split[col]]
        per_model[f"{col}_lo"] = [e.lo for e in split[col]]
        per_model[f"{col}_hi"] = [e.hi for e in split[col]]
        per_model[f"{col}_prompts"] = [e.prompts for e in split[col]]
    peer, peer_sim, indist = nearest_peers(sim.C, sim.W)
    per_model["nearest_peer"] = [models[p] if p >= 0 else None for p in peer]
    per_model["nearest_peer_similarity"] = peer_sim
    per_model["indistinguishable"] = indist
    return per_model


def _assemble(
    st: _Study,
    sim: _Similarity,
    vr: VoicesResult,
    distinct,
    split,
    per_model,
    group_list,
    highlight,
    ref: _Reference | None,
    level,
    settings: dict,
) -> MeasureResult:
    """The headline, the group and what-if tables, and the result that holds them."""
    models, prompts = st.models, st.prompts
    headline: dict[str, Any] = {
        "homogeneity": sim.H.to_dict(),
        "off_prompt_floor": sim.F,
        "voices": split["voices"][0].to_dict(),
        "calibration": _calibration_record(st.mu, sim.F),
    }
    if ref is not None:
        headline["reference"] = _reference(ref, models, sim.pair, per_prompt_floor(st.X, st.index), st.counts, level)
    keys = [g.key for g in group_list]
    groups_df = _groups_table(group_list, keys, split, vr, st.counts, level, highlight)
    return MeasureResult(
        models=models,
        prompts=prompts,
        per_model=per_model,
        similarity=pd.DataFrame(sim.C, index=models, columns=models),
        similarity_prompts=pd.DataFrame(sim.C_n, index=models, columns=models),
        per_prompt=pd.DataFrame(
            {
                "models": st.index.models_per_prompt,
                "responses": st.index.prompt_size,
                "voices": vr.voices,
                "homogeneity": per_prompt_homogeneity(sim.pair, sim.members),
            },
            index=pd.Index(prompts, name="prompt"),
        ),
        loo_per_prompt=pd.DataFrame(vr.loo, index=pd.Index(prompts, name="prompt"), columns=models),
        groups=groups_df,
        headline=headline,
        skipped=st.skipped,
        settings=settings,
        mu=st.mu,
        what_if_removed=_what_if(highlight, groups_df, per_model),
        notes=st.notes,
        voices_detail=vr,
        distinct_per_prompt=distinct,
        pair_per_prompt=sim.pair,
        counts=st.counts,
    )


def _separability_stage(result: MeasureResult, st: _Study, pairwise, level, seed, n_jobs) -> None:
    if st.n_clusters < 2:
        st.notes.append(f"separability not computed: needs at least 2 {st.unit}s to hold one out")
        return
    sep = style_separability(
        st.X,
        st.model,
        st.prompt,
        st.M,
        st.P,
        pairwise=pairwise,
        counts=st.counts,
        level=level,
        seed=seed,
        n_jobs=n_jobs,
        folds_by=st.cluster[st.prompt],
    )
    result.separability = sep
    result.pairwise_auc = pd.DataFrame(sep.pairwise_auc, index=st.models, columns=st.models)
    total = sep.per_prompt_total.sum(axis=0)
    result.per_model["separability_recall"] = np.where(
        total > 0, sep.per_prompt_correct.sum(axis=0) / np.maximum(total, 1), np.nan
    )


def _resolve_groups(groups: dict[str, dict[str, str]], models: list[str], skipped: dict) -> list[Group]:
    known = set(models)
    by_value: dict[str, list[str]] = {}
    raw: list[tuple[str, str, list[str]]] = []
    unknown: set[str] = set()
    for attr, mapping in groups.items():
        values: dict[str, list[str]] = {}
        for m, v in mapping.items():
            if v is None or (isinstance(v, float) and np.isnan(v)):
                continue
            if m not in known:
                unknown.add(m)
                continue
            values.setdefault(str(v), []).append(m)
        for v, members in values.items():
            raw.append((attr, v, [m for m in models if m in members]))
            by_value.setdefault(v, []).append(attr)
    skipped["group_models_unknown"] = sorted(unknown)
    return [
        Group(key=v if len(by_value[v]) == 1 else f"{attr}={v}", attribute=attr, value=v, members=members)
        for attr, v, members in raw
    ]


def _resolve_highlights(names: Sequence[str], groups: list[Group], models: list[str]) -> list[tuple[str, str, str]]:
    """(name, kind, key) for each name: a group key, "attr=value", a group value, or a model."""
    out = []
    for name in names:
        match = [g for g in groups if name in (g.key, f"{g.attribute}={g.value}")]
        if not match:
            match = [g for g in groups if g.value == name]
        if len(match) == 1:
            out.append((name, "group", match[0].key))
        elif len(match) > 1:
            raise MetricsInputError(
                f"what_if_removed name {name!r} is a value of several attributes; write one of "
                + ", ".join(f"{g.attribute}={g.value}" for g in match)
            )
        elif name in models:
            out.append((name, "model", name))
        else:
            raise MetricsInputError(f"what_if_removed name {name!r} is neither a group nor a model of this study")
    return out


def _groups_table(groups, keys, split, vr, counts, level, highlight) -> pd.DataFrame:
    cols = [
        "attribute",
        "group",
        "members",
        "size",
        "loss",
        "loss_lo",
        "loss_hi",
        "loss_prompts",
        "baseline",
        "baseline_lo",
        "baseline_hi",
        "baseline_draws",
        "excess",
        "excess_lo",
        "excess_hi",
        "excess_p",
        "highlighted",
    ]
    if not groups:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="group_key"))
    hl = {key for _, kind, key in highlight if kind == "group"}
    rows = []
    for i, g in enumerate(groups):
        loss, base, exc = split["group_loss"][i], split["group_base"][i], split["group_excess"][i]
        paired = paired_bootstrap(vr.group_loss[g.key], vr.group_baseline[g.key], counts=counts, level=level)
        rows.append(
            {
                "attribute": g.attribute,
                "group": g.value,
                "members": g.members,
                "size": len(g.members),
                "loss": loss.value,
                "loss_lo": loss.lo,
                "loss_hi": loss.hi,
                "loss_prompts": loss.prompts,
                "baseline": base.value,
                "baseline_lo": base.lo,
                "baseline_hi": base.hi,
                "baseline_draws": vr.baseline_draws.get(len(g.members), 0),
                "excess": exc.value,
                "excess_lo": exc.lo,
                "excess_hi": exc.hi,
                "excess_p": paired.p_value,
                "highlighted": g.key in hl,
            }
        )
    return pd.DataFrame(rows, index=pd.Index(keys, name="group_key"), columns=cols)


def _what_if(highlight, groups_df: pd.DataFrame, per_model: pd.DataFrame) -> dict:
    out = {}
    for name, kind, key in highlight:
        if kind == "group":
            r = groups_df.loc[key]
            out[name] = {
                "kind": "group",
                "key": key,
                "members": r["members"],
                "value": r["loss"],
                "ci": [r["loss_lo"], r["loss_hi"]],
                "prompts": r["loss_prompts"],
                "baseline": r["baseline"],
                "excess": r["excess"],
                "excess_p": r["excess_p"],
            }
        else:
            r = per_model.loc[key]
            out[name] = {
                "kind": "model",
                "key": key,
                "members": [key],
                "value": r["loo"],
                "ci": [r["loo_lo"], r["loo_hi"]],
                "prompts": r["loo_prompts"],
                "baseline": float(np.nanmean(per_model["loo"])),
                "excess": None,
                "excess_p": None,
            }
    return _clean(out)


def _resolve_reference(reference: str, models: list[str], groups: list[Group]) -> _Reference:
    if reference in models:
        members, kind = np.array([models.index(reference)]), "model"
    else:
        match = [g for g in groups if reference in (g.key, g.value, f"{g.attribute}={g.value}")]
        if len(match) != 1:
            raise MetricsInputError(f"reference {reference!r} is neither a model nor exactly one group of this study")
        members, kind = np.array([models.index(m) for m in match[0].members]), "group"
    others = np.array([i for i in range(len(models)) if i not in set(members.tolist())], dtype=np.int64)
    if len(others) < 2:
        raise MetricsInputError(f"reference {reference!r} leaves fewer than 2 other models to compare")
    return _Reference(reference, kind, members, others)


def _reference(ref: _Reference, models, pair, floor_pp, counts, level) -> dict:
    """H among models against the reference's, above the floor (DEVIATIONS.md, item 19)."""
    cmp = reference_comparison(pair, counts, ref.others, ref.members, floor_pp, level)
    return {
        "name": ref.name,
        "kind": ref.kind,
        "members": [models[i] for i in ref.members],
        "ratio": cmp["ratio"].to_dict(),
        "ratio_definition": "(H - F) / (H_ref - F)",
        "difference": cmp["difference"].to_dict(),
        "floor": cmp["floor"].to_dict(),
        "homogeneity_models": cmp["models"].to_dict(),
        "homogeneity_reference": cmp["reference"].to_dict(),
    }


def _lineage(groups: list[Group], models: list[str], C: np.ndarray, n_perm: int, seed: int) -> pd.DataFrame:
    rows = {}
    for attr in dict.fromkeys(g.attribute for g in groups):
        labels = np.full(len(models), -1, dtype=np.int64)
        for code, g in enumerate(g for g in groups if g.attribute == attr):
            labels[[models.index(m) for m in g.members]] = code
        contrast = group_contrast(C, labels, n_perm, seed)
        keep = np.flatnonzero(labels >= 0)
        same = (labels[keep][:, None] == labels[keep][None, :]).astype(float)
        mantel = mantel_test(C[np.ix_(keep, keep)], same, n_perm, seed)
        rows[attr] = {**contrast, "mantel_r": mantel["r"], "mantel_p": mantel["p_value"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("attribute")


def _accent(derivatives, models, groups, fam_attr, pair, counts, level, notes) -> pd.DataFrame:
    fam = groups.get(fam_attr, {}) if fam_attr else {}
    rows = {}
    for d, b in derivatives.items():
        if d not in models or b not in models:
            missing = d if d not in models else b
            raise MetricsInputError(f"derivative pair {d!r} -> {b!r}: model {missing!r} is not in this study")
        di, bi = models.index(d), models.index(b)
        if fam_attr and d in fam:
            others = [i for i, m in enumerate(models) if fam.get(m) != fam[d]]
        else:
            others = list(range(len(models)))
            note = f"accent retention: {d} has no family value, so 'others' are all models but it and its base"
            notes.append(note)
        e = accent_retention(pair, di, bi, np.array(others, dtype=np.int64), counts, level)
        if not np.isfinite(pair[:, bi, bi]).any():
            notes.append(f"accent retention of {d}: base {b} has no prompt with k >= 2, so W_b is undefined")
        elif e.unstable:
            notes.append(f"accent retention of {d} withheld: {e.reason}")
        rows[d] = {
            "base": b,
            "value": e.value,
            "lo": e.lo,
            "hi": e.hi,
            "prompts": e.prompts,
            "others": int(len([o for o in others if o not in (di, bi)])),
            "unstable": e.unstable,
            "reason": e.reason or "",
            "numerator": e.numerator.value,
            "denominator": e.denominator.value,
            "denominator_lo": e.denominator.lo,
            "denominator_hi": e.denominator.hi,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("derivative")


def _timed(f, *args):
    t = time.perf_counter()
    return f(*args), time.perf_counter() - t


def _lexical(texts, model, index: CellIndex, models: list[str]) -> pd.DataFrame:
    cell_of_row = np.empty(len(model), dtype=np.int64)
    cell_of_row[index.order] = np.repeat(np.arange(len(index.cell_start)), index.cell_size)
    whole, cells = lexical_table(texts, [model, cell_of_row], [len(models), len(index.cell_start)])
    whole.index = pd.Index(models, name="model")
    figures = [c for c in cells.columns if c not in ("texts", "tokens")]
    by_model = cells[figures].groupby(index.cell_model).mean()
    by_model.index = [models[i] for i in by_model.index]
    for c in figures:
        whole[f"per_prompt_{c}"] = by_model[c].reindex(whole.index)
    return whole
