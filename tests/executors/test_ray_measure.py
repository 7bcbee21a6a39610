"""Measuring in shards of prompts: the per-prompt figures of slices, put end to end, give the
single-machine figures, in memory (no Ray) and through Ray tasks on a local cluster
(``ray.init(num_cpus=2)``) from a real store."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monoculture.executors.ray_measure import _shard, combine, shard_bounds, slices
from monoculture.metrics.pipeline import measure_all
from monoculture.metrics.responses import ResponseSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from metrics.metrics_helpers import synthetic_study  # noqa: E402


def frames_equal(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=0, atol=1e-12, obj=name)


def json_close(a, b, where: str = "") -> None:
    """Two JSON summaries equal, numbers to 1e-12 (a slice's Gram products may differ from the
    whole study's in the last bit, as rows are gathered in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            json_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            json_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert b == pytest.approx(a, rel=0, abs=1e-12), where
    else:
        assert a == b, where


def tables(result) -> dict[str, pd.DataFrame]:
    from monoculture.measure import result_tables

    return result_tables(result)


def study_with_texts(seed: int = 3) -> ResponseSet:
    """Six models, 17 prompts (an odd count: slices of unequal size), k = 3, texts with repeats
    (the partition's short-answer rule reads them), and prompt clusters (two prompts per group)."""
    rng = np.random.default_rng(seed)
    rs = synthetic_study(rng, n_models=6, n_prompts=17, k=3, d=16)
    words = ["yes", "no", "maybe", "a longer answer about the topic at hand"]
    texts = [words[i] for i in rng.integers(0, len(words), len(rs.model))]
    perm = rng.permutation(len(rs.model))  # rows out of cell order, so the slices must restore it
    return dataclasses.replace(
        rs,
        X=rs.X[perm],
        model=rs.model[perm],
        prompt=rs.prompt[perm],
        sample=rs.sample[perm],
        texts=[texts[i] for i in perm],
        clusters=[f"g{p // 2}" for p in range(17)],
    )


KW = dict(
    groups={"family": {"m0": "a", "m1": "a", "m2": "b", "m3": "b", "m4": "b"}},
    n_boot=300,
    seed=5,
    tau=0.6,
    n_perm=49,
    n_random=7,
    center=True,
)


@pytest.mark.parametrize("shards", [1, 4, 17])
def test_slices_put_end_to_end_give_the_single_machine_figures(shards):
    rs = study_with_texts()
    calls = []

    def in_memory(st, masks, opts):
        parts = [_shard(*args) for args in slices(st, masks, opts, shards)]
        calls.append(len(parts))
        return combine(parts)

    whole = measure_all(rs, **KW)
    sliced = measure_all(rs, per_prompt=in_memory, **KW)
    assert calls == [min(shards, 17)]
    frames_equal(tables(sliced), tables(whole))
    json_close(sliced.to_json_dict(), whole.to_json_dict())
    np.testing.assert_allclose(sliced.pair_per_prompt, whole.pair_per_prompt, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sliced.distinct_per_prompt, whole.distinct_per_prompt)


def test_a_slice_in_the_wrong_place_changes_the_figures():
    """The comparison above can fail: the same slices combined out of order do not pass it."""
    rs = study_with_texts()

    def swapped(st, masks, opts):
        parts = [_shard(*args) for args in slices(st, masks, opts, 3)]
        return combine(parts[::-1])

    whole = measure_all(rs, **KW)
    with pytest.raises(AssertionError):
        frames_equal(tables(measure_all(rs, per_prompt=swapped, **KW)), tables(whole))


def test_shard_bounds_cover_every_prompt_once():
    for n, k in [(1, 1), (5, 2), (17, 4), (3, 10), (100, 7)]:
        b = shard_bounds(n, k)
        assert b[0][0] == 0 and b[-1][1] == n and len(b) == min(n, k)
        assert all(lo < hi for lo, hi in b) and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))


# ---- through Ray tasks, from a store, by the CLI --------------------------------------------------

TOPICS = ["the sea", "a mountain", "bread", "winter", "a library", "trains", "music", "gardens", "the moon", "rivers", "chess"]
STYLES = {
    "poet-a": "O {t}, you shine and sing; verse {i} of my song about {t}.",
    "poet-b": "O {t}, you glow and ring; line {i} of a poem on {t}.",
    "lister": "1. {t} facts\n2. more about {t}\n3. item {i}",
    "pundit": "In my view, {t} matters because people need it (take {i}).",
}


def fill(path: Path) -> None:
    from monoculture.importers import Imported, import_records
    from monoculture.store import Store

    recs = [
        Imported(m, f"p{p}", f"Tell me about {t}.", style.format(t=t, i=i), sample_index=i)
        for m, style in STYLES.items()
        for p, t in enumerate(TOPICS)
        for i in range(3)
    ]
    with Store(path) as st:
        import_records(st, recs, "jsonl")
        st.upsert_models(
            [
                {"name": n, "backend": "import", "model_id": n, "source": "jsonl", "attributes": {"family": n.split("-")[0]}}
                for n in STYLES
            ]
        )


@pytest.mark.slow
def test_measure_on_ray_stores_the_single_machine_figures(tmp_path):
    """``monoculture measure --ray`` (a driver of its own on the test's cluster, five slices as Ray
    tasks) stores every table and the summary as a measure on one machine does, to 1e-12."""
    import os
    import subprocess

    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'monoculture[ray]')")
    from monoculture.measure import load_results, measure
    from monoculture.store import Store

    fill(tmp_path / "ray.duckdb")
    fill(tmp_path / "local.duckdb")
    opts = ["-e", "tfidf", "--tau", "0.8", "-B", "200", "--seed", "3", "--permutations", "49", "--random-groups", "5"]
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cmd = [sys.executable, "-c", "from monoculture.cli import main; main()", "measure", str(tmp_path / "ray.duckdb")]
        cmd += ["--ray", "--ray-address", ray.get_runtime_context().gcs_address, "--ray-shards", "5", "-q", *opts]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        ray.shutdown()
    with Store(tmp_path / "local.duckdb") as st:
        measure(st, embedder="tfidf", tau=0.8, n_boot=200, seed=3, n_perm=49, n_random=5, show_progress=False)
    with Store(tmp_path / "ray.duckdb", read_only=True) as a, Store(tmp_path / "local.duckdb", read_only=True) as b:
        got, want = load_results(a), load_results(b)
    assert got.label == want.label
    assert len(want.tables) >= 8
    frames_equal(got.tables, want.tables)
    for s in (got.summary, want.summary):
        s["settings"].pop("seconds")
    json_close(got.summary, want.summary)


def test_measure_refuses_ray_options_without_ray(tmp_path):
    from typer.testing import CliRunner

    from monoculture.cli import app

    fill(tmp_path / "s.duckdb")
    res = CliRunner().invoke(app, ["measure", str(tmp_path / "s.duckdb"), "--ray-shards", "3", "-e", "tfidf"])
    assert res.exit_code == 2 and "need --ray" in res.output
