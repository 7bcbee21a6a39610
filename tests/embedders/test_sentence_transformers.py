"""sentence-transformers on a tiny BERT built here: batch by length, fp16, the window, and the
library's ONNX / OpenVINO backends (tested where optimum can be installed beside this
transformers; a clear error naming the extra where it cannot)."""

from __future__ import annotations

import numpy as np
import pytest

from monoculture.embedders import get_embedder
from monoculture.errors import UserError
from monoculture.measure import measure

pytest.importorskip("sentence_transformers")
pytestmark = pytest.mark.slow

TEXTS = ["a", "the cat sat on the mat and the dog sat too", "hello", "bread is baked in ovens by bakers every day", "x y"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("st") / "tiny")


@pytest.fixture(scope="module")
def one_by_one(tiny):
    """Reference vectors: each text encoded alone, so no padding and no reordering."""
    e = get_embedder(f"sentence-transformers:{tiny}")
    return np.stack([e.model.encode([t], normalize_embeddings=False)[0] for t in TEXTS])


def test_batches_by_length_and_puts_vectors_back_in_order(tiny, one_by_one):
    e = get_embedder(f"sentence-transformers:{tiny}?batch_size=2&device=cpu")
    assert e.batch_size == 2 and e.device == "cpu"
    assert get_embedder(f"sentence-transformers:{tiny}?device=cpu").batch_size == 16  # the CPU default
    np.testing.assert_allclose(e.embed(TEXTS), one_by_one, atol=1e-5)
    np.testing.assert_allclose(e.embed(TEXTS[::-1]), one_by_one[::-1], atol=1e-5)


def test_fp16_halves_the_weights_within_tolerance(tiny, one_by_one):
    import torch

    e = get_embedder(f"sentence-transformers:{tiny}?fp16=true")
    assert e.fp16 and next(e.model.parameters()).dtype == torch.float16
    np.testing.assert_allclose(e.embed(TEXTS), one_by_one, atol=5e-3)
    assert e.cache_key == get_embedder(f"sentence-transformers:{tiny}").cache_key  # the same model's vectors


def test_texts_past_the_window_are_cut_and_counted(tiny, tmp_path):
    from embedder_data import fill

    from monoculture.store import Store

    e = get_embedder(f"sentence-transformers:{tiny}")
    assert e.max_len == 128 and "truncated" in e.long_texts
    assert e.truncated(["word " * 200, "short"]).tolist() == [True, False]
    with Store(tmp_path / "long.duckdb") as st:
        fill(st, extra={"long": "the sea " * 150})
        res = measure(st, embedder=f"sentence-transformers:{tiny}", n_boot=20, separability=False, show_progress=False)
    assert res.summary["truncated_texts"] == 4 and res.summary["long_texts"]["truncated"] == 4
    assert any("4 texts longer than its window were cut" in n for n in res.summary["notes"])


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_onnx_and_openvino_backends(tiny, one_by_one, backend):
    """Where optimum is installed the model is exported on load and gives the torch vectors;
    where it is not (the main environment: optimum-onnx needs an older transformers), the error
    names the extra to install. tests/engines/test_st_backends.py runs both in .venv-st."""
    try:
        e = get_embedder(f"sentence-transformers:{tiny}?backend={backend}")
    except UserError as err:
        assert f"pip install 'monoculture[{backend}]'" in str(err)
        pytest.skip(f"{backend} backend not installed here: {err}")
    assert e.backend == backend
    np.testing.assert_allclose(e.embed(TEXTS), one_by_one, atol=1e-4)


def test_a_saved_export_leaves_the_folder_version(tmp_path):
    """The library asks for its ONNX / OpenVINO export to be saved into the model's folder
    (onnx/, openvino/): that must not change the folder's version, or every vector embedded
    with the model so far would be keyed under another model. Its weights still do."""
    from monoculture.embedders.sentence_transformers import model_version

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text("{}")
    before = model_version(str(tmp_path))
    for sub, name in (("onnx", "model.onnx"), ("openvino", "openvino_model.xml")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(b"export")
    assert model_version(str(tmp_path)) == before
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert model_version(str(tmp_path)) != before


def test_a_hub_name_is_read_from_the_cache_the_library_loads_from(tmp_path, monkeypatch):
    """SentenceTransformer loads Hub models from $SENTENCE_TRANSFORMERS_HOME where it is set: the
    commit in the key and the snapshot loaded offline (ONNX / OpenVINO) come from that cache too,
    and only at the revision asked for: a commit or branch it does not hold gives no snapshot,
    never main's."""
    from monoculture.embedders.sentence_transformers import _cached_snapshot, model_version

    name, main, other = "tiny-org/cached-st", "a" * 40, "b" * 40
    repo = tmp_path / "models--tiny-org--cached-st"
    for commit in (main, other):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(main)
    monkeypatch.setenv("SENTENCE_TRANSFORMERS_HOME", str(tmp_path))
    assert model_version(name) == main[:12] and model_version(name, other) == other[:12]
    assert _cached_snapshot(name, None) == str(repo / "snapshots" / main)
    assert _cached_snapshot(name, other) == str(repo / "snapshots" / other)
    assert _cached_snapshot(name, "c" * 40) is None and _cached_snapshot(name, "v2") is None
    assert model_version(name, "v2") == "rev-v2"
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME")
    assert _cached_snapshot(name, None) is None and model_version(name) == "unknown-revision"
