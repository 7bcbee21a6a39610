"""Homogenisation over time: the series, their slopes against release date, intervals and tests.

:func:`analyse` works on a :class:`~monoculture.metrics.responses.ResponseSet` and a dict of
release dates (pure: tests build synthetic studies); :func:`trend_analysis` reads a store's
answers and the embeddings and calibration of one of its measurements, and the dates from
:func:`monoculture.trends.dates.release_dates`. Both return a :class:`TrendResult`.

Uncertainty. Every figure is recomputed on B bootstrap replicates that resample prompt clusters
(the measurement's clusters and the same seeded draw as ``measure``) and, independently, the
dated models (a model drawn twice counts twice in the earlier field, in a window and in the
regression; one not drawn is absent). The slope's p-value shuffles release dates among the
models (seeded) and recomputes the whole series, so "earlier" and the windows' members change
with the dates, as they would if the dates carried no information.

A per-model series can slope with no trend (a maximum over a growing earlier field, a distance
to a centroid of more and more models), so its tested slope is the excess over its null drift,
the mean slope under shuffled dates, recomputed inside every bootstrap replicate; its test is
centred on the drift. The equal-n voices slope takes the interval that inverts its permutation
test: no bootstrap over models suits a count of voices (a model drawn twice is no second voice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from monoculture.errors import UserError
from monoculture.metrics.responses import ResponseSet
from monoculture.metrics.similarity import pair_similarity, prompt_means
from monoculture.metrics.stats import percentile_ci, replicate_means, resample_counts
from monoculture.trends.series import (
    centre_distance,
    earlier_mask,
    equal_n_subsets,
    field_similarity,
    model_means,
    pool_voices,
    subset_means,
    window_homogeneity,
)
from monoculture.trends.slopes import FEW_MODELS, Slope, null_drift, slope_summary, weighted_slope
from monoculture.trends.windows import PERIODS, Window, decimal_year, make_windows

#: Series of one point per model (its release) and of one point per window.
MODEL_SERIES = ("similarity_to_earlier", "nearest_earlier", "distance_to_centre")
WINDOW_SERIES = ("homogeneity", "voices", "voices_equal_n")
#: Raw voices grow with the number of models in a window, so their slope would mostly measure
#: how many models each period released: only the equal-n voices get a slope.
SLOPED = MODEL_SERIES + ("homogeneity", "voices_equal_n")
GROUP_ATTRIBUTES = ("open_weights", "country", "family")
MIN_MODELS = 3


@dataclass
class TrendResult:
    """The series and slopes of one trend analysis. :meth:`to_json_dict` is the object that
    ``monoculture trend --json`` prints and that the report's "Over time" section reads:
    ``series`` (name -> list of {date, value, ci, models, ...}), ``slopes`` (list of
    {series, group, value, ci, p, ...}), ``cohorts``, the dated and undated models and the
    settings."""

    series: dict[str, list[dict]]
    slopes: list[Slope]
    models: list[str]
    dates: dict[str, date]
    sources: dict[str, str]
    undated: list[str]
    settings: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def slope(self, series: str, group: str | None = None) -> Slope:
        for s in self.slopes:
            if s.series == series and s.group == group:
                return s
        raise KeyError((series, group))

    def to_json_dict(self) -> dict:
        return {
            "series": self.series,
            "slopes": [s.to_dict() for s in self.slopes],
            "models": [{"model": m, "released": self.dates[m].isoformat(), "source": self.sources.get(m)} for m in self.models],
            "dated": len(self.models),
            "undated": {"count": len(self.undated), "models": list(self.undated)},
            "settings": self.settings,
            "notes": list(self.notes),
        }


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _point(d: date, value: float, lo: float, hi: float, models: list[str], **extra) -> dict:
    return {"date": d.isoformat(), "value": _num(value), "ci": [_num(lo), _num(hi)], "models": models, **extra}


def _permutations(M: int, n_perm: int, seed: int, within: np.ndarray | None = None) -> np.ndarray:
    """(K, M) index arrays: model m takes the date of model perm[k, m]. With ``within`` (model
    codes), only those models' dates are shuffled among themselves."""
    rng = np.random.default_rng([seed, 14, 2] + ([] if within is None else [int(within.sum()), len(within)]))
    perm = np.tile(np.arange(M), (n_perm, 1))
    idx = np.arange(M) if within is None else np.asarray(within, dtype=np.int64)
    perm[:, idx] = idx[np.argsort(rng.random((n_perm, len(idx))), axis=1)]
    return perm


def _model_stack(C_in, G_in, earlier, weights) -> dict[str, np.ndarray]:
    S, near = field_similarity(C_in, earlier, weights)
    return {
        "similarity_to_earlier": S,
        "nearest_earlier": near,
        "distance_to_centre": centre_distance(G_in, earlier, weights),
    }


def _model_perm_slopes(
    C_in: np.ndarray,
    G: np.ndarray,
    x: np.ndarray,
    perm: np.ndarray,
    members: np.ndarray,
    w: np.ndarray | None = None,
    elements: int = 2_000_000,
) -> dict[str, np.ndarray]:
    """Slopes among ``members`` of every per-model series under each row of ``perm`` (model m
    takes the date of model perm[k, m]): (K,) for the point C (M, M), (c, K) for a chunk of
    bootstrap replicates C (c, M, M) with their model weights w (c, M). Permutations are taken
    in chunks of about ``elements`` (c, k, M, M) entries."""
    M = C_in.shape[-1]
    lead = C_in.shape[:-2]
    step = max(1, elements // (max(1, int(np.prod(lead))) * M * M))
    out: dict[str, list[np.ndarray]] = {k: [] for k in MODEL_SERIES}
    for lo in range(0, len(perm), step):
        xp = x[perm[lo : lo + step]]  # (k, M)
        E = earlier_mask(xp)
        if lead:
            assert w is not None, "bootstrap replicates come with their model weights"
            vals = _model_stack(C_in[:, None], G, E[None], w[:, None, :])
            ww = np.broadcast_to(w[:, None, :], vals["similarity_to_earlier"].shape)[..., members]
            xx = np.broadcast_to(xp[None], ww.shape[:-1] + (M,))[..., members]
        else:
            vals, ww, xx = _model_stack(C_in, G, E, None), None, xp[:, members]
        for k in MODEL_SERIES:
            out[k].append(weighted_slope(xx, vals[k][..., members], ww))
    return {k: np.concatenate(v, axis=-1) for k, v in out.items()}


def analyse(
    rs: ResponseSet,
    dates: dict[str, date],
    *,
    center: bool | np.ndarray = False,
    attributes: dict[str, dict] | None = None,
    sources: dict[str, str] | None = None,
    period: str = "year",
    window: int = 1,
    n: int | None = None,
    n_boot: int = 1000,
    n_perm: int = 999,
    voice_permutations: int | None = 199,
    draws: int = 20,
    seed: int = 0,
    q: float = 1.0,
    level: float = 0.95,
    chunk: int = 128,
    drift_permutations: int = 49,
) -> TrendResult:
    """Every series of METRICS.md "Over time" and the slope of each, for the dated models of ``rs``.

    ``center``: as in :func:`~monoculture.metrics.measure_all` (False: rows are used as given
    and only normalised; an array: the measurement's calibration mean). Models without a
    date are left out and listed in ``undated``. ``voice_permutations`` caps the permutations of
    the equal-n voices slope, whose every permutation needs new Vendi scores (None: n_perm).
    """
    from monoculture.metrics.pipeline import _prepare_study  # the one cleaning path of measure

    if period not in PERIODS:
        raise UserError(f"--period {period!r}: use one of {', '.join(PERIODS)}")
    if window < 1:
        raise UserError(f"--window {window}: a window spans at least 1 period")
    if n is not None and n < 2:
        raise UserError(f"--n {n}: voices need at least 2 models per subset")
    if n_boot < 1 or n_perm < 1:
        raise UserError(f"-B and --permutations must be at least 1, got {n_boot} and {n_perm}")
    names = list(rs.model_names)
    model_codes = np.asarray(rs.model)
    with_rows = [m for i, m in enumerate(names) if np.any(model_codes == i)]
    undated = [m for m in with_rows if m not in dates]
    dated = [m for m in with_rows if m in dates]
    if len(dated) < MIN_MODELS:
        raise UserError(
            f"a trend needs at least {MIN_MODELS} models with a release date, got {len(dated)}"
            + (f" ({', '.join(dated)})" if dated else "")
            + (f"; {len(undated)} without one: {', '.join(undated[:8])}{' ...' if len(undated) > 8 else ''}" if undated else "")
            + " (set dates with `monoculture attributes STORE --set MODEL:released=YYYY-MM` or --dates FILE)"
        )
    keep = np.isin(model_codes, [names.index(m) for m in dated])
    st = _prepare_study(rs.subset(keep), center, n_boot, seed)
    models = st.models
    M, P, B = len(models), st.P, n_boot
    if M < MIN_MODELS:
        raise UserError(f"a trend needs at least {MIN_MODELS} dated models with usable answers, got {M} ({', '.join(models)})")
    d = [dates[m] for m in models]
    x = np.array([decimal_year(v) for v in d])
    if np.unique(x).size < 2:
        raise UserError(f"all {M} dated models share one release date ({d[0].isoformat()}): there is no time axis")
    # (B, M) model multiplicities, from their own seeded stream (default_rng takes the seed list)
    w = resample_counts(M, B, [seed, 14, 1])
    counts = st.counts
    notes: list[str] = []  # measure's own notes (k >= 2 for W) do not concern the trend

    pair = pair_similarity(st.X, st.index)
    C, _ = prompt_means(pair)
    C_b = replicate_means(pair.reshape(P, M * M), counts).reshape(B, M, M)
    ubar = model_means(st.X, st.index)
    G = ubar @ ubar.T
    E = earlier_mask(x)

    point = _model_stack(C, G, E, None)
    reps: dict[str, list[np.ndarray]] = {k: [] for k in MODEL_SERIES}
    for lo in range(0, B, chunk):
        # The centre's replicates draw models only: means over resampled prompts keep more of
        # what prompts share and shrink every distance (DEVIATIONS.md, "Over time").
        for k, chunk_vals in _model_stack(C_b[lo : lo + chunk], G, E, w[lo : lo + chunk]).items():
            reps[k].append(chunk_vals)
    rep = {k: np.concatenate(v) for k, v in reps.items()}

    series: dict[str, list[dict]] = {}
    for name in MODEL_SERIES:
        lo_, hi_ = percentile_ci(rep[name], level)
        order = np.argsort(x, kind="stable")
        series[name] = [_point(d[m], point[name][m], lo_[m], hi_[m], [models[m]]) for m in order if np.isfinite(point[name][m])]

    k_drift = max(1, min(n_perm, drift_permutations))

    def model_slopes(name_group: str | None, members: np.ndarray, perm: np.ndarray) -> list[Slope]:
        """Each per-model series' excess slope among ``members``: the permuted slopes give the
        observed drift and the p-value; every bootstrap replicate gets its own drift from the
        first ``k_drift`` permutations, so the interval is one of the excess."""
        observed = _model_perm_slopes(C, G, x, perm, members)
        drift_b: dict[str, list[np.ndarray]] = {k: [] for k in MODEL_SERIES}
        raw_b: dict[str, list[np.ndarray]] = {k: [] for k in MODEL_SERIES}
        for lo in range(0, B, chunk):
            wc = w[lo : lo + chunk][:, members]
            ps = _model_perm_slopes(C_b[lo : lo + chunk], G, x, perm[:k_drift], members, w[lo : lo + chunk])
            for k in MODEL_SERIES:
                t_b = weighted_slope(x[members], rep[k][lo : lo + chunk][:, members], wc)
                raw_b[k].append(t_b)
                drift_b[k].append(null_drift(t_b, ps[k]))
        out = []
        for name in MODEL_SERIES:
            defined = int(np.isfinite(point[name][members]).sum())
            if name_group is not None and defined < MIN_MODELS:
                continue
            out.append(
                slope_summary(
                    name,
                    name_group,
                    float(weighted_slope(x[members], point[name][members])),
                    np.concatenate(raw_b[name]),
                    observed[name],
                    len(members),
                    defined,
                    level,
                    replicate_drift=np.concatenate(drift_b[name]),
                )
            )
        return out

    everyone = np.arange(M)
    perm_all = _permutations(M, n_perm, seed)
    slopes: list[Slope] = model_slopes(None, everyone, perm_all)

    # -- windows -----------------------------------------------------------------------------
    wins = [wn for wn in make_windows(d, period, window) if len(wn.members) >= 2]
    if not wins:
        notes.append(f"no {period} window holds 2 or more dated models: no cohort series (try a longer --period or --window)")
    a = np.zeros((len(wins), M), dtype=bool)
    for i, wn in enumerate(wins):
        a[i, wn.members] = True
    mids = np.array([wn.mid for wn in wins])
    H = window_homogeneity(C, a)
    H_b = window_homogeneity(C_b, a[None], w)
    lo_, hi_ = percentile_ci(H_b, level)
    series["homogeneity"] = [_win_point(wn, H[i], lo_[i], hi_[i], models) for i, wn in enumerate(wins)]
    V = pool_voices(st.X, st.index, a, q)
    Vm = replicate_means(V.T, np.ones((1, P)))[0]  # (W,) each window's mean voices over prompts
    V_b = replicate_means(V.T, counts)  # (B, W)
    lo_, hi_ = percentile_ci(V_b, level)
    series["voices"] = [_win_point(wn, Vm[i], lo_[i], hi_[i], models) for i, wn in enumerate(wins)]

    sizes = [len(wn.members) for wn in wins]
    n_eq = int(n) if n is not None else (min(sizes) if sizes else 0)
    eq_wins = [i for i, s in enumerate(sizes) if s >= n_eq] if n_eq >= 2 else []
    if n is not None and wins and not eq_wins:
        raise UserError(f"--n {n}: no window holds {n} dated models (the largest holds {max(sizes)})")
    if n is not None and len(eq_wins) < len(wins):
        notes.append(f"voices_equal_n: {len(wins) - len(eq_wins)} window(s) with fewer than n = {n_eq} models left out")
    subsets = [equal_n_subsets(wins[i].members, M, n_eq, draws, seed) for i in eq_wins]
    Vs_all = pool_voices(st.X, st.index, np.vstack(subsets), q) if subsets else np.zeros((0, P))
    cuts = np.cumsum([0] + [len(s) for s in subsets])
    # A window's interval resamples prompts and its random subsets, not models: a bootstrap
    # that counts a model drawn twice twice makes a pool of 4 models score 1.7 to 3.6 voices
    # where they score 3.5 (duplicates are not voices); see DEVIATIONS.md, "Over time".
    rng_sub = np.random.default_rng([seed, 14, 3])
    eq_point = np.full(len(eq_wins), np.nan)
    eq_b = np.full((B, len(eq_wins)), np.nan)
    for j in range(len(eq_wins)):
        Vs = Vs_all[cuts[j] : cuts[j + 1]]
        S_ = Vs.shape[0]
        sub_w = np.stack([np.bincount(r, minlength=S_) for r in rng_sub.integers(0, S_, size=(B, S_))]).astype(np.float64)
        eq_point[j] = subset_means(Vs, None, None)[0]
        eq_b[:, j] = subset_means(Vs, sub_w, counts)
    lo_, hi_ = percentile_ci(eq_b, level)
    series["voices_equal_n"] = [
        _win_point(wins[i], eq_point[j], lo_[j], hi_[j], models, n=n_eq, subsets=int(cuts[j + 1] - cuts[j]))
        for j, i in enumerate(eq_wins)
    ]

    # Under permuted dates the windows stay (the dates are the same set), their members change.
    Hp = []
    for lo in range(0, n_perm, chunk):
        ap = a[:, perm_all[lo : lo + chunk]].transpose(1, 0, 2)  # model m takes the date of perm[k, m]
        Hp.append(weighted_slope(mids, window_homogeneity(C, ap)))
    slopes.append(
        slope_summary(
            "homogeneity",
            None,
            float(weighted_slope(mids, H)) if wins else float("nan"),
            weighted_slope(mids, H_b) if wins else np.full(B, np.nan),
            np.concatenate(Hp) if wins else np.full(n_perm, np.nan),
            M,
            len(wins),
            level,
        )
    )
    k_voice = n_perm if voice_permutations is None else min(n_perm, voice_permutations)
    slopes.append(
        _voices_slope(st.X, st.index, a, eq_wins, mids, n_eq, draws, seed, q, eq_point, eq_b, perm_all[:k_voice], M, level)
    )

    # -- groups: the per-model series among a group's models, against the whole earlier field --
    for attr in GROUP_ATTRIBUTES:
        values: dict[str, list[int]] = {}
        for i, m in enumerate(models):
            v = (attributes or {}).get(m, {}).get(attr)
            if v is not None and v != "":
                values.setdefault(str(v).lower() if isinstance(v, bool) else str(v), []).append(i)
        if len(values) < 2 and attr != "family":
            continue  # one value only: the group is the whole field
        for val, idx in sorted(values.items()):
            mem = np.asarray(idx, dtype=np.int64)
            if len(mem) < MIN_MODELS or np.unique(x[mem]).size < 2:
                continue
            slopes.extend(model_slopes(f"{attr}={val}", mem, _permutations(M, n_perm, seed, within=mem)))
    if M < FEW_MODELS:
        notes.append(f"only {M} dated models (fewer than {FEW_MODELS}): every trend here rests on very few releases")
    if undated:
        notes.append(f"{len(undated)} model(s) without a release date left out: {', '.join(undated)}")
    settings = {
        "period": period,
        "window": window,
        "n": n_eq,
        "draws": draws,
        "n_boot": n_boot,
        "permutations": n_perm,
        "voice_permutations": k_voice,
        "drift_permutations": k_drift,
        "seed": seed,
        "q": q,
        "level": level,
        "prompts": P,
        "clusters": st.n_clusters,
        "resampling": f"{st.unit} clusters and models" if st.unit != "prompt" else "prompts and models",
        "p_value": "two-sided, shuffling release dates among the models (per-model series: centred on their shuffled-date drift)",
        "tested": "per-model series: slope minus its mean under shuffled dates (raw beside it); window series: the slope",
        "slope_unit": "per year",
    }
    return TrendResult(series, slopes, models, {m: dates[m] for m in models}, dict(sources or {}), undated, settings, notes)


def _win_point(wn: Window, value: float, lo: float, hi: float, models: list[str], **extra) -> dict:
    return _point(
        wn.start,
        value,
        lo,
        hi,
        [models[i] for i in wn.members],
        label=wn.label,
        end=wn.end.isoformat(),
        n_models=len(wn.members),
        **extra,
    )


def _voices_slope(X, index, a, eq_wins, mids, n_eq, draws, seed, q, eq_point, eq_b, perm, M, level) -> Slope:
    """The equal-n voices slope; each permutation draws new subsets of each window's new
    members (same n, same number of draws), all scored in one batched Vendi pass.

    Its interval is the permutation interval (the slope plus or minus the level-quantile of the
    shuffled-date slopes' size): no bootstrap over models suits a diversity count, and the
    shuffled dates are what moves models between windows (DEVIATIONS.md, "Over time")."""
    x = mids[eq_wins] if len(eq_wins) else np.zeros(0)
    if len(eq_wins) < 2:
        nan = float("nan")
        return Slope("voices_equal_n", None, nan, nan, nan, nan, M, len(eq_wins), 0)
    masks, sizes = [], []
    for k, pk in enumerate(perm):
        for i in eq_wins:
            members = np.flatnonzero(a[i][pk])
            sub = equal_n_subsets(members, M, n_eq, draws, seed + 7919 * (k + 1))
            masks.append(sub)
            sizes.append(len(sub))
    V = pool_voices(X, index, np.vstack(masks), q)
    cuts = np.cumsum([0] + sizes)  # the (k, j) blocks of rows, appended in order
    perm_vals = np.array([subset_means(V[cuts[r] : cuts[r + 1]], None, None)[0] for r in range(len(sizes))])
    perm_vals = perm_vals.reshape(len(perm), len(eq_wins))
    return slope_summary(
        "voices_equal_n",
        None,
        float(weighted_slope(x, eq_point)),
        weighted_slope(x, eq_b),
        weighted_slope(x, perm_vals),
        M,
        len(eq_wins),
        level,
        interval="permutation",
    )


def trend_analysis(
    store,
    *,
    label: str | None = None,
    dates_file: str | None = None,
    dates: dict[str, date] | None = None,
    **options: Any,
) -> TrendResult:
    """The trend analysis of a store: its measurement's answers, embeddings and calibration
    (the latest, or ``label``), and the models' release dates from
    :func:`monoculture.trends.dates.release_dates` (or ``dates``). ``options`` go to
    :func:`analyse` (period, window, n, n_boot, n_perm, seed, ...). Returns a
    :class:`TrendResult`; its ``to_json_dict()`` is the ``--json`` shape, and it is what the
    report's "Over time" section calls. Nothing is written to the store.
    """
    from monoculture.trends.inputs import measured_responses

    rs, mu, info = measured_responses(store, label)
    sources: dict[str, str] = {}
    if dates is None:
        from monoculture.trends.dates import release_dates

        dates, sources = release_dates(store, list(rs.model_names), dates_file=dates_file)
    result = analyse(
        rs, dates, center=mu if mu is not None else False, attributes=store.model_attributes(), sources=sources, **options
    )
    result.settings.update(info)
    return result
